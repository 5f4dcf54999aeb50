// The playground's behaviour: panels built from /v1/model and /openapi.json, requests to /v1/..., results drawn as DOM.
// Every value from the server is inserted as text (never as HTML), so a sentence cannot inject markup.

const KEY_STORE = "bertkit-api-key";
const PALETTE = 8; // word colours .w0 ... .w7 in playground.css
const state = {key: sessionStorage.getItem(KEY_STORE), model: null, started: false};

// -- what each panel sends and draws -----------------------------------------------------------------
// `own`: request fields the panel's own inputs fill; every other field of the request schema becomes an
// option control, shown at once when `main` names it and under "More options" otherwise. `choices`:
// values the schema cannot list (a layer's range depends on the model).
const PANELS = {
  tokenize: {
    own: ["texts", "pairs"],
    body: (p) => withPair({texts: [value(p, "tokenize-text")]}, value(p, "tokenize-pair")),
    render: renderTokens,
  },
  "fill-mask": {
    own: ["texts"],
    main: ["top_k", "targets"],
    body: (p) => ({texts: [value(p, "fill-mask-text")]}),
    render: renderFillMask,
  },
  similarity: {
    own: ["sentences", "word", "matrix"],
    main: ["layer", "pooling", "occurrence"],
    body: (p) => ({sentences: lines(p, "similarity-sentences"), word: value(p, "similarity-word"), matrix: true}),
    render: renderWordInContext,
    choices: {layer: (model) => [-1, ...range(model.config.num_hidden_layers + 1)]},
  },
  embed: {
    own: ["texts"],
    main: ["pooling", "normalize"],
    body: (p) => ({texts: lines(p, "embed-texts")}),
    render: renderSentenceSimilarity,
  },
  predict: {
    own: ["texts", "pairs"],
    body: (p) => ({texts: lines(p, "predict-texts")}),
    render: renderPredictions,
  },
};

// -- talking to the server -------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

async function api(path, body) {
  const headers = {Accept: "application/json"};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  let response;
  try {
    response = await fetch(path, {method: body === undefined ? "GET" : "POST", headers,
                                  body: body === undefined ? undefined : JSON.stringify(body)});
  } catch (e) {
    throw new ApiError(0, "network", `the server did not answer (${e.message})`);
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = data && data.error;
    const failure = new ApiError(response.status, error ? error.type : "http_error",
                                 error ? error.message : `HTTP ${response.status} ${response.statusText}`);
    if (response.status === 401) askForKey(failure.message);
    throw failure;
  }
  if (data === null) throw new ApiError(response.status, "not_json", `${path} did not answer JSON`);
  return data;
}

function askForKey(message) {
  const form = document.getElementById("key-form");
  document.getElementById("key-why").textContent = message;
  form.hidden = false;
  document.getElementById("api-key").focus();
}

function useKey(event) {
  event.preventDefault();
  state.key = document.getElementById("api-key").value.trim();
  sessionStorage.setItem(KEY_STORE, state.key);
  document.getElementById("key-form").hidden = true;
  if (!state.started) start();
}

// -- start: what the model serves, and each panel's controls --------------------------------------------
async function start() {
  let openapi;
  try {
    state.model = await api("v1/model");
    openapi = await api("openapi.json");
  } catch (e) {
    if (e.status !== 401) showPageError(`cannot start the playground: ${e.message}`);
    return; // on 401 the key form is up; sending it calls start() again
  }
  state.started = true;
  document.getElementById("page-error").hidden = true;
  document.getElementById("model-line").textContent = describeModel(state.model);
  await Promise.all(Object.keys(PANELS).map((id) => setUpPanel(document.getElementById(id), openapi)));
  document.body.dataset.ready = "true";
}

function describeModel(m) {
  const c = m.config;
  const parts = [m.model, `${(m.parameters / 1e6).toFixed(1)}M parameters`,
                 `${c.num_hidden_layers} layers, hidden size ${c.hidden_size}`,
                 `heads: ${m.heads.length ? m.heads.join(", ") : "none"}`, `device ${m.device}`,
                 `up to ${m.max_length} tokens`];
  if (m.labels.length) parts.push(`labels: ${m.labels.join(", ")}`);
  if (m.limits.api_key) parts.push("API key required");
  return parts.join(" · ");
}

async function setUpPanel(section, openapi) {
  const spec = PANELS[section.id];
  const endpoint = section.dataset.endpoint;
  const schema = requestSchema(openapi, `/${endpoint}`);
  if (!schema) return switchOff(section, `this server has no /${endpoint}`);
  section.readers = buildOptions(section, schema, spec);
  if (!state.model.endpoints[`/${endpoint}`]) {
    // The server's own one-line reason (which head is missing, what it serves instead): it answers
    // an unsupported task with 400 before it even reads the body.
    try {
      await api(endpoint, {});
      switchOff(section, `the loaded model cannot serve /${endpoint}`);
    } catch (e) {
      switchOff(section, e.message);
    }
    return;
  }
  section.dataset.status = "ready";
}

function switchOff(section, reason) {
  section.classList.add("off");
  section.querySelector("fieldset").disabled = true;
  const note = section.querySelector(".off-reason");
  note.textContent = `Off for this model: ${reason}`;
  note.hidden = false;
  section.dataset.status = "off";
}

function requestSchema(openapi, path) {
  const op = openapi.paths && openapi.paths[path] && openapi.paths[path].post;
  const schema = op && op.requestBody && op.requestBody.content["application/json"].schema;
  return schema ? resolve(openapi, schema) : null;
}

function resolve(openapi, schema) {
  if (!schema.$ref) return schema;
  return schema.$ref.replace(/^#\//, "").split("/").reduce((node, key) => node[key], openapi);
}

// -- option controls, from the request schema ------------------------------------------------------------
function buildOptions(section, schema, spec) {
  const readers = [];
  for (const [name, raw] of Object.entries(schema.properties || {})) {
    if (spec.own.includes(name)) continue;
    const choices = spec.choices && spec.choices[name] ? spec.choices[name](state.model) : [];
    const [control, read] = optionControl(`${section.id}-${name}`, raw, choices, section);
    section.querySelector((spec.main || []).includes(name) ? ".option-list.main" : ".option-list.more").append(control);
    readers.push([name, read]);
  }
  section.querySelector(".options").hidden = !section.querySelector(".option-list.more").children.length;
  return readers;
}

// One control per field: a list of allowed values -> a select, a boolean -> a checkbox (or a three-way
// select when "not sent" means the model's own setting), a number -> a number box with the schema's
// bounds, a list of strings -> a comma-separated box. Fields left empty are not sent, so the server's
// default (named in the description) applies.
function optionControl(id, prop, extraChoices, section) {
  const kinds = (prop.anyOf || [prop]).filter((k) => k.type !== "null");
  const nullable = (prop.anyOf || []).some((k) => k.type === "null");
  const has = (type) => kinds.find((k) => k.type === type);
  const values = [...extraChoices, ...kinds.flatMap((k) => k.enum || [])];
  const help = el("small", {id: `${id}-help`}, prop.description || "");
  const label = el("label", {for: id}, prop.title || id);
  const common = {id, name: id, "aria-describedby": `${id}-help`};
  let input, read;
  if (values.length) {
    input = el("select", common);
    if (!("default" in prop)) input.append(el("option", {value: ""}, "server default"));
    for (const v of values) input.append(el("option", {value: String(v), selected: prop.default === v}, String(v)));
    read = () => (input.value === "" ? undefined : has("integer") && /^-?\d+$/.test(input.value) ? Number(input.value)
                                                                                                   : input.value);
    input.addEventListener("change", () => {
      if (section.dataset.status === "done") section.querySelector("form").requestSubmit(); // e.g. another layer
    });
  } else if (has("boolean") && !nullable) {
    input = el("input", {...common, type: "checkbox", checked: prop.default === true});
    read = () => input.checked;
    return [el("div", {class: "option check"}, input, label, help), read];
  } else if (has("boolean")) {
    input = el("select", common, el("option", {value: ""}, "server default"), el("option", {value: "true"}, "yes"),
               el("option", {value: "false"}, "no"));
    read = () => (input.value === "" ? undefined : input.value === "true");
  } else if (has("integer") || has("number")) {
    const k = has("integer") || has("number");
    input = el("input", {...common, type: "number", step: has("integer") ? 1 : "any", min: k.minimum, max: k.maximum,
                         value: prop.default ?? ""});
    read = () => (input.value === "" ? undefined : Number(input.value));
  } else if (has("array")) {
    input = el("input", {...common, type: "text", placeholder: "comma-separated"});
    read = () => {
      const items = input.value.split(",").map((s) => s.trim()).filter(Boolean);
      return items.length ? items : undefined;
    };
  } else {
    input = el("input", {...common, type: "text", value: prop.default ?? ""});
    read = () => input.value || undefined;
  }
  return [el("div", {class: "option"}, label, input, help), read];
}

// -- one request -----------------------------------------------------------------------------------------------
async function run(section) {
  const spec = PANELS[section.id];
  const output = section.querySelector(".output");
  const error = section.querySelector(".error");
  const button = section.querySelector("button[type=submit]");
  const body = spec.body(section);
  for (const [name, read] of section.readers || []) {
    const v = read();
    if (v !== undefined) body[name] = v;
  }
  section.dataset.status = "busy";
  section.setAttribute("aria-busy", "true");
  button.disabled = true;
  error.hidden = true;
  try {
    const data = await api(section.dataset.endpoint, body);
    output.replaceChildren();
    spec.render(data, output, body);
    section.dataset.status = "done";
  } catch (e) {
    output.replaceChildren();
    error.textContent = e.message; // the server's one-line reason, as it wrote it
    error.dataset.type = e.type;
    error.hidden = false;
    section.dataset.status = "error";
  } finally {
    button.disabled = false;
    section.removeAttribute("aria-busy");
    section.dataset.runs = Number(section.dataset.runs || 0) + 1; // lets a watcher tell this answer from the last
  }
}

// -- Tokenize ------------------------------------------------------------------------------------------------------
function renderTokens(rows, out, body) {
  const row = rows[0];
  const limit = state.model.max_length;
  const n = row.tokens.length;
  out.append(el("p", {class: "count", "data-count": n, "data-limit": limit},
                `${n} tokens of the ${limit} this model reads`,
                row.n_truncated ? `: ${row.n_truncated} more were cut` : ""),
             el("meter", {min: 0, max: limit, value: n, "aria-label": "tokens used of the model's limit"}));
  const texts = [row.text, body.pairs ? body.pairs[0] : null];
  texts.forEach((text, seq) => { if (text != null) out.append(colouredText(text, row, seq)); });
  const detail = el("p", {class: "tok-detail", "aria-live": "polite"}, "Point at (or tab to) a piece for its details.");
  const list = el("ol", {class: "tokens", "aria-label": "word pieces"});
  row.tokens.forEach((token, i) => {
    const word = row.word_ids[i];
    const [start, end] = row.offsets[i];
    const special = row.special_tokens_mask[i] === 1;
    const seq = row.type_ids[i];
    const about = special ? `${token}: special token, id ${row.ids[i]}`
      : `${token}: id ${row.ids[i]}, characters ${start}–${end} ("${slice(texts[seq], start, end)}"), word ${word}`;
    const item = el("li", {class: `tok ${special ? "special" : `w${word % PALETTE}`}${seq ? " second" : ""}`,
                           tabindex: 0, title: about, "data-token": token, "data-id": row.ids[i],
                           "data-word": word ?? "", "data-start": start, "data-end": end},
                    el("span", {class: "piece"}, token), el("span", {class: "id"}, row.ids[i]));
    const show = () => { detail.textContent = about; };
    item.addEventListener("mouseenter", show);
    item.addEventListener("focus", show);
    list.append(item);
  });
  out.append(list, detail);
}

// The text itself with each word's characters in its pieces' colour (offsets count code points).
function colouredText(text, row, seq) {
  const chars = Array.from(text);
  const owner = new Array(chars.length).fill(null);
  row.tokens.forEach((_, i) => {
    if (row.special_tokens_mask[i] || row.type_ids[i] !== seq) return;
    const [start, end] = row.offsets[i];
    for (let c = start; c < end; c++) owner[c] = row.word_ids[i];
  });
  const p = el("p", {class: "source", "aria-label": seq ? "second text, words coloured" : "text, words coloured"});
  let c = 0;
  while (c < chars.length) {
    let e = c + 1;
    while (e < chars.length && owner[e] === owner[c]) e++;
    const run = chars.slice(c, e).join("");
    p.append(owner[c] === null ? run : el("span", {class: `w${owner[c] % PALETTE}`}, run));
    c = e;
  }
  return p;
}

// -- Fill-mask --------------------------------------------------------------------------------------------------
function renderFillMask(rows, out) {
  const row = rows[0];
  row.masks.forEach((candidates, j) => {
    const top = Math.max(...candidates.map((c) => c.score)) || 1;
    const figure = el("figure", {class: "bars", "data-mask": j},
                      el("figcaption", {}, `[MASK] ${j + 1} of ${row.masks.length}`));
    for (const c of candidates) {
      const name = c.target && c.target !== c.token ? `${c.target} (${c.token})` : c.token;
      figure.append(barRow(name, c.score, c.score / top, formatProbability(c.score),
                           {"data-token": c.token, title: `${name}: ${formatProbability(c.score)}`}));
    }
    out.append(figure);
  });
  if (row.filled) out.append(el("p", {class: "filled"}, `Best guess: ${row.filled}`));
  out.append(el("p", {class: "note"}, "Bars are relative to each mask's most probable word; numbers are probabilities."));
}

// -- Word in context ------------------------------------------------------------------------------------------
function renderWordInContext(data, out) {
  const first = data.words[0];
  const pair = el("div", {class: "heatmaps"},
                  heatmapFigure(data.matrix, data.labels, "context",
                                `In context: layer ${first.layer}, ${first.pooling} of the word's pieces`));
  if (data.static_matrix) {
    pair.append(heatmapFigure(data.static_matrix, data.labels, "static",
                              "Static: the word-embedding table (Word2Vec-style)"));
  }
  out.append(pair, el("p", {class: "reading"}, reading(data)));
  const list = el("ol", {class: "contexts"});
  for (const w of data.words) {
    const chars = Array.from(w.sentence);
    const [start, end] = w.span;
    list.append(el("li", {}, chars.slice(0, start).join(""), el("mark", {}, chars.slice(start, end).join("")),
                   chars.slice(end).join(""), el("small", {}, ` pieces: ${w.tokens.join(" ")}`)));
  }
  out.append(list);
}

function reading(data) {
  const off = (m) => m.flatMap((r, i) => r.filter((_, j) => j !== i));
  const context = off(data.matrix);
  if (!context.length) return "";
  const text = `In context the word's vectors differ: cosine ${Math.min(...context).toFixed(3)} to `
             + `${Math.max(...context).toFixed(3)} between sentences.`;
  if (!data.static_matrix) return text;
  const fixed = off(data.static_matrix);
  const same = Math.min(...fixed) > 0.9995;
  return `${text} A static model ${same ? "gives the word one vector in every sentence: cosine 1.000 for every pair, "
                                          + "so it cannot tell the senses apart"
                                        : `ranges ${Math.min(...fixed).toFixed(3)} to ${Math.max(...fixed).toFixed(3)}`}.`;
}

// -- Sentence similarity ---------------------------------------------------------------------------------------
function renderSentenceSimilarity(data, out, body) {
  // Unit vectors first: the server normalises only when the model's settings (or the request) say so.
  const unit = data.embeddings.map((v) => {
    const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0)) || 1;
    return v.map((x) => x / norm);
  });
  const matrix = unit.map((a) => unit.map((b) => a.reduce((s, x, k) => s + x * b[k], 0)));
  const labels = body.texts.map((t) => short(t, 40));
  out.append(heatmapFigure(matrix, labels, "sentences", `Cosine similarity of ${data.dim}-dimensional sentence vectors`));
  if (matrix.length < 2) {
    out.append(el("p", {class: "note"}, "Give two or more sentences to compare them."));
    return;
  }
  const nearest = el("ol", {class: "nearest", "aria-label": "nearest neighbour of each sentence"});
  matrix.forEach((row, i) => {
    const j = row.reduce((best, v, k) => (k !== i && (best < 0 || v > row[best]) ? k : best), -1);
    nearest.append(el("li", {"data-row": i, "data-nearest": j},
                      `${short(body.texts[i], 40)} → closest: ${j + 1}. ${short(body.texts[j], 40)} (${row[j].toFixed(3)})`));
  });
  out.append(el("h3", {}, "Nearest neighbour"), nearest);
}

// -- Classify --------------------------------------------------------------------------------------------------
function renderPredictions(rows, out) {
  for (const row of rows) {
    const box = el("div", {class: "prediction", "data-label": row.label ?? ""}, el("p", {class: "text"}, el("q", {}, row.text ?? "")));
    if (row.error) {
      box.append(el("p", {class: "row-error"}, `not classified: ${row.error}`));
    } else {
      const chosen = new Set(row.labels ?? (row.label != null ? [row.label] : []));
      const scores = Object.entries(row.scores).sort((a, b) => b[1] - a[1]);
      const probabilities = scores.every(([, s]) => s >= 0 && s <= 1); // a regression model's raw outputs are not
      const top = Math.max(...scores.map(([, s]) => Math.abs(s))) || 1;
      box.append(el("p", {class: "label"}, chosen.size ? `→ ${[...chosen].join(", ")}` : "→ no label over the threshold"));
      for (const [name, s] of scores) {
        box.append(barRow(chosen.has(name) ? `${name} ✓` : name, s, probabilities ? s : Math.abs(s) / top,
                          probabilities ? formatProbability(s) : s.toFixed(4), {"data-name": name}));
      }
      if (row.truncated) box.append(el("p", {class: "note"}, `${row.truncated} tokens were cut from this text.`));
    }
    const windows = longDocumentNote(row);
    if (windows) box.append(windows);
    out.append(box);
  }
}

// == Long documents: the place for what lands later =========================================================
// Long-document classification adds `windows` (how many windows a long text was read in, or the windows
// themselves) and may add `strategy` (how their scores were combined) to each predict row. Nothing shows
// for a text read in one window; otherwise they show here, read loosely so the page need not change
// with their exact shape.
function longDocumentNote(row) {
  const count = Array.isArray(row.windows) ? row.windows.length : row.windows;
  if (!(count > 1) && row.strategy == null) return null;
  const parts = [];
  if (count != null) parts.push(`read in ${count} windows`);
  if (row.strategy != null) parts.push(`combined by ${typeof row.strategy === "string" ? row.strategy : JSON.stringify(row.strategy)}`);
  const note = el("details", {class: "windows"}, el("summary", {}, `Long text: ${parts.join(", ")}`));
  if (Array.isArray(row.windows)) note.append(el("pre", {}, JSON.stringify(row.windows, null, 1)));
  return note;
}

// -- drawing blocks ----------------------------------------------------------------------------------------------
// A heatmap as a table: the number in each cell (3 decimals; the full value in data-value), its colour
// on one fixed 0..1 scale so two heatmaps side by side compare at a glance.
function heatmapFigure(matrix, labels, kind, caption) {
  const n = matrix.length;
  const head = el("tr", {}, el("th", {scope: "col"}, el("span", {class: "visually-hidden"}, "sentence")),
                  range(n).map((j) => el("th", {scope: "col", title: labels[j]}, j + 1)));
  const rows = matrix.map((row, i) => el("tr", {},
    el("th", {scope: "row", title: labels[i]}, `${i + 1}. `, el("span", {class: "row-label"}, labels[i])),
    row.map((v, j) => {
      const [background, colour] = heatColour(v);
      return el("td", {"data-value": v, style: `background:${background};color:${colour}`,
                       title: `${i + 1} and ${j + 1}: ${v.toFixed(4)}`}, v.toFixed(3));
    })));
  const table = el("table", {class: "heatmap", "data-kind": kind}, el("caption", {}, caption),
                   el("thead", {}, head), el("tbody", {}, rows));
  return el("figure", {class: "heatmap-figure"}, el("div", {class: "scroll"}, table));
}

const LOW = [243, 247, 252]; // colour of cosine 0 (and below)
const HIGH = [8, 48, 107]; // colour of cosine 1

function heatColour(v) {
  const t = Math.min(1, Math.max(0, v));
  const rgb = LOW.map((lo, k) => Math.round(lo + (HIGH[k] - lo) * t));
  // Black or white text, whichever contrasts more with the cell (WCAG relative luminance).
  const lum = rgb.map((c) => c / 255).map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  const y = 0.2126 * lum[0] + 0.7152 * lum[1] + 0.0722 * lum[2];
  return [`rgb(${rgb.join(",")})`, (y + 0.05) / 0.05 > 1.05 / (y + 0.05) ? "#000" : "#fff"];
}

function barRow(name, score, fraction, shown, attrs) {
  const width = `${(100 * Math.min(1, Math.max(0, fraction))).toFixed(1)}%`;
  return el("div", {class: "bar-row", "data-score": score, ...attrs},
            el("span", {class: "bar-label"}, name),
            el("span", {class: "bar-track", "aria-hidden": "true"}, el("span", {class: "bar", style: `width:${width}`})),
            el("span", {class: "bar-value"}, shown));
}

function formatProbability(p) {
  return p >= 0.0005 ? `${(100 * p).toFixed(1)}%` : p.toExponential(1);
}

// -- small helpers -------------------------------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined).map((c) => (c instanceof Node ? c : String(c))));
  return node;
}

function value(section, id) {
  return section.querySelector(`#${id}`).value.trim();
}

function lines(section, id) {
  return section.querySelector(`#${id}`).value.split("\n").map((s) => s.trim()).filter(Boolean);
}

function withPair(body, pair) {
  return pair ? {...body, pairs: [pair]} : body;
}

function range(n) {
  return Array.from({length: n}, (_, i) => i);
}

function slice(text, start, end) {
  return Array.from(text).slice(start, end).join("");
}

function short(text, n) {
  return text.length <= n ? text : `${text.slice(0, n - 1)}…`;
}

function showPageError(message) {
  const p = document.getElementById("page-error");
  p.textContent = message;
  p.hidden = false;
}

// Ctrl+Enter (Cmd+Enter on a Mac) sends a text box's form; Enter already sends single-line inputs.
document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target.matches("textarea")) {
    event.preventDefault();
    event.target.form.requestSubmit();
  }
});
for (const id of Object.keys(PANELS)) {
  const section = document.getElementById(id);
  section.querySelector("form").addEventListener("submit", (event) => {
    event.preventDefault(); // the page sends the request itself, as JSON
    if (["ready", "done", "error"].includes(section.dataset.status)) run(section);
  });
}
document.getElementById("key-form").addEventListener("submit", useKey);
start();
