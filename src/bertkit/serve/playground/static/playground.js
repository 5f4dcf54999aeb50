// The playground's behaviour: panels built from /v1/model and /openapi.json, requests to /v1/..., results drawn as DOM.
// Every value from the server is inserted as text (never as HTML), so a sentence cannot inject markup.

const KEY_STORE = "bertkit-api-key";
const PALETTE = 8; // word colours .w0 ... .w7 in playground.css
const state = {key: sessionStorage.getItem(KEY_STORE), model: null, started: false};

// -- what each panel sends and draws -----------------------------------------------------------------
// The panels are the server's: one per endpoint /v1/model lists. A task drawn in a way of its own has its
// section in index.html and its entry here; any other task gets a panel built from its request schema
// (taskPanel), its answer shown as JSON.
// `own`: request fields the panel's own inputs fill; every other field of the request schema becomes an
// option control, shown at once when `main` names it and under "More options" otherwise. `choices`:
// values the schema cannot list (a layer's range depends on the model). `setUp`: extra controls to build
// once the model is known.
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
  attention: {
    own: ["texts", "pairs", "layers", "heads"], // the grid shows every layer and head, so the page asks for all
    body: (p) => withPair({texts: [value(p, "attention-text")]}, value(p, "attention-pair")),
    render: renderAttention,
    setUp: setUpAttentionView,
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
  for (const path of Object.keys(state.model.endpoints)) {
    const name = path.replace(/^\/v1\//, "");
    if (!document.getElementById(name)) document.querySelector("main.panels").append(taskPanel(name, openapi));
  }
  await Promise.all([...document.querySelectorAll("main.panels > .panel")].map((s) => setUpPanel(s, openapi)));
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
  const endpoint = section.dataset.endpoint;
  const schema = requestSchema(openapi, `/${endpoint}`);
  if (!schema) return switchOff(section, `this server has no /${endpoint}`);
  const spec = PANELS[section.id] || schemaSpec(section, schema);
  section.spec = spec;
  section.querySelector("form").addEventListener("submit", (event) => {
    event.preventDefault(); // the page sends the request itself, as JSON
    if (["ready", "done", "error"].includes(section.dataset.status)) run(section);
  });
  section.readers = buildOptions(section, schema, spec);
  if (spec.setUp) spec.setUp(section);
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

// -- a panel for any other task, from its schema --------------------------------------------------------------
// Its title is the task's name, its lead the endpoint's summary and description; every list of texts in its
// request is a box of lines, prefilled from the schema's example; every other field an option control.
function taskPanel(name, openapi) {
  const op = operation(openapi, `/v1/${name}`) || {};
  const section = document.getElementById("task-panel").content.firstElementChild.cloneNode(true);
  const title = name.charAt(0).toUpperCase() + name.slice(1).replace(/-/g, " ");
  section.id = name;
  section.dataset.endpoint = `v1/${name}`;
  section.setAttribute("aria-labelledby", `${name}-title`);
  Object.assign(section.querySelector("h2"), {id: `${name}-title`, textContent: title});
  const about = [op.summary, op.description].filter(Boolean).map((t) => t.replace(/`/g, "").replace(/\.?$/, "."));
  section.querySelector(".lead").textContent = about.join(" ");
  section.querySelector("legend").textContent = title;
  return section;
}

function schemaSpec(section, schema) {
  const example = (schema.examples || [])[0] || {};
  const required = schema.required || [];
  const lists = Object.entries(schema.properties || {}).filter(([, prop]) => isTextList(prop)).map(([name]) => name);
  const box = section.querySelector(".inputs");
  for (const name of lists) {
    const id = `${section.id}-${name}`;
    const prop = schema.properties[name];
    const optional = required.includes(name) ? "" : " (optional)";
    box.append(el("label", {for: id}, `${prop.title || name}, one per line${optional}`),
               el("textarea", {id, rows: 3, required: required.includes(name), "aria-describedby": `${id}-help`}),
               el("small", {id: `${id}-help`}, prop.description || ""));
    box.querySelector(`#${id}`).value = (example[name] || []).join("\n");
  }
  return {
    own: lists,
    main: required,
    body: (p) => Object.fromEntries(lists.map((name) => [name, lines(p, `${p.id}-${name}`)])
                                         .filter(([name, v]) => v.length || required.includes(name))),
    render: renderJson,
    setUp: (p) => {
      for (const [name, v] of Object.entries(example)) {
        const input = p.querySelector(`#${p.id}-${name}`);
        if (!lists.includes(name) && input && input.value === "" && typeof v !== "object") input.value = String(v);
      }
    },
  };
}

function isTextList(prop) {
  return (prop.anyOf || [prop]).some((k) => k.type === "array" && k.items && k.items.type === "string" && !k.items.enum);
}

function renderJson(data, out) {
  out.append(el("pre", {class: "json"}, JSON.stringify(data, null, 2)));
}

function switchOff(section, reason) {
  section.classList.add("off");
  section.querySelector("fieldset").disabled = true;
  const note = section.querySelector(".off-reason");
  note.textContent = `Off for this model: ${reason}`;
  note.hidden = false;
  section.dataset.status = "off";
}

function operation(openapi, path) {
  return openapi.paths && openapi.paths[path] && openapi.paths[path].post;
}

function requestSchema(openapi, path) {
  const op = operation(openapi, path);
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
  const spec = section.spec;
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
function renderPredictions(rows, out, body) {
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
    if (row.windows > 1) {
      box.append(el("p", {class: "note windows"}, `A long text: read in ${row.windows} windows, their scores combined`
                                                  + (body.aggregate ? ` by ${body.aggregate}` : "")));
    }
    out.append(box);
  }
}

// -- Attention --------------------------------------------------------------------------------------------------
// The page asks for every layer and head once; the layer and head pickers, and the grid, only change the view.
function setUpAttentionView(section) {
  const config = state.model.config;
  for (const [id, count] of [["attention-layer", config.num_hidden_layers], ["attention-head", config.num_attention_heads]]) {
    const select = section.querySelector(`#${id}`);
    select.replaceChildren(...range(count).map((i) => el("option", {value: i}, i)));
    select.addEventListener("change", () => drawAttention(section));
  }
}

function renderAttention(rows, out) {
  const section = out.closest(".panel");
  section.answer = rows[0];
  drawAttention(section);
}

function drawAttention(section) {
  const row = section.answer;
  const out = section.querySelector(".output");
  if (!row || section.dataset.status === "error") return;
  const layer = Number(section.querySelector("#attention-layer").value);
  const head = Number(section.querySelector("#attention-head").value);
  const a = row.layers.indexOf(layer);
  const b = row.heads.indexOf(head);
  if (a < 0 || b < 0) return;
  const matrix = row.attention[a][b];
  out.replaceChildren(
    el("p", {class: "focus", "data-layer": layer, "data-head": head},
       el("strong", {}, `Layer ${layer}, head ${head}`), `: on average a token's attention goes ${focusWords(row, a, b)}.`),
    el("div", {class: "attention-views"}, headView(row, matrix),
       heatmapFigure(matrix, row.tokens, "attention", "Each row: how that token's attention is spread",
                     {what: "token", short: true})),
    attentionGrid(row, section, layer, head));
  if (row.truncated) out.append(el("p", {class: "note"}, `${row.truncated} tokens were cut from this text.`));
}

// Where a head's attention goes (the answer's `focus`, in its order), as percentages.
function focusWords(row, a, b) {
  const name = (key) => (["cls", "sep"].includes(key) ? `[${key.toUpperCase()}]` : key);
  return Object.entries(row.focus).map(([key, v]) => `${name(key)} ${(100 * v[a][b]).toFixed(0)}%`).join(", ");
}

// Tokens twice, queries left and keys right; a line from i to j as strong as i's attention to j. Pointing at
// (or tabbing to) a token on the left keeps only its lines.
function headView(row, matrix) {
  const n = row.tokens.length;
  const [width, step, top, left, right] = [360, 20, 12, 140, 220];
  const picture = svg("svg", {class: "head-view", viewBox: `0 0 ${width} ${2 * top + step * (n - 1)}`, role: "img",
                              "aria-label": "lines from each token to the tokens it attends to"});
  const lines = [];
  matrix.forEach((weights, i) => weights.forEach((p, j) => {
    const line = svg("line", {x1: left + 6, y1: top + i * step, x2: right - 6, y2: top + j * step,
                              "stroke-width": (0.4 + 3 * p).toFixed(2), "stroke-opacity": p.toFixed(3), "data-from": i});
    lines.push(line);
  }));
  picture.append(...lines);
  row.tokens.forEach((token, i) => {
    const segment = row.type_ids[i] ? " second" : "";
    const from = svg("text", {x: left, y: top + i * step, "text-anchor": "end", class: `from${segment}`, tabindex: 0},
                     token);
    const only = (on) => lines.forEach((line) => line.classList.toggle("dim", on && Number(line.dataset.from) !== i));
    for (const [event, on] of [["mouseenter", true], ["mouseleave", false], ["focus", true], ["blur", false]]) {
      from.addEventListener(event, () => only(on));
    }
    picture.append(from, svg("text", {x: right, y: top + i * step, "text-anchor": "start", class: `to${segment}`}, token));
  });
  return el("figure", {class: "head-view-figure"},
            el("figcaption", {}, "Token (left) attends to token (right)"), picture);
}

// Every layer (rows) and head (columns) as a small heatmap; clicking one shows it above.
function attentionGrid(row, section, layer, head) {
  const grid = el("div", {class: "attention-grid", role: "group", "aria-label": "every layer and head",
                          style: `grid-template-columns: auto repeat(${row.heads.length}, minmax(0, 1fr))`},
                  el("span", {}), row.heads.map((h) => el("span", {class: "grid-head"}, h)));
  row.layers.forEach((l, a) => {
    grid.append(el("span", {class: "grid-layer"}, l));
    row.heads.forEach((h, b) => {
      const about = `layer ${l}, head ${h}: ${focusWords(row, a, b)}`;
      const cell = el("button", {type: "button", class: "cell", title: about, "aria-label": about, "data-layer": l,
                                 "data-head": h, "aria-pressed": String(l === layer && h === head)},
                      miniHeatmap(row.attention[a][b]));
      cell.addEventListener("click", () => {
        section.querySelector("#attention-layer").value = String(l);
        section.querySelector("#attention-head").value = String(h);
        drawAttention(section);
        section.querySelector(`.attention-grid [data-layer="${l}"][data-head="${h}"]`).focus();
      });
      grid.append(cell);
    });
  });
  return el("figure", {class: "grid-figure"},
            el("figcaption", {}, "Every layer (rows) and head (columns): click one to show it"), grid);
}

function miniHeatmap(matrix) {
  const n = matrix.length;
  const canvas = el("canvas", {width: n, height: n, "aria-hidden": "true"});
  const image = new ImageData(n, n);
  matrix.forEach((weights, i) => weights.forEach((v, j) => image.data.set([...heatRgb(v), 255], 4 * (i * n + j))));
  canvas.getContext("2d").putImageData(image, 0, 0);
  return canvas;
}

// -- drawing blocks ----------------------------------------------------------------------------------------------
// A heatmap as a table: the number in each cell (3 decimals; the full value in data-value), its colour
// on one fixed 0..1 scale so two heatmaps side by side compare at a glance.
// `what` names the rows and columns (for screen readers); short labels (tokens) head the columns themselves, long
// ones (sentences) are numbered.
function heatmapFigure(matrix, labels, kind, caption, {what = "sentence", short = false} = {}) {
  const n = matrix.length;
  const head = el("tr", {}, el("th", {scope: "col"}, el("span", {class: "visually-hidden"}, what)),
                  range(n).map((j) => el("th", {scope: "col", title: labels[j]}, short ? labels[j] : j + 1)));
  const rows = matrix.map((row, i) => el("tr", {},
    el("th", {scope: "row", title: labels[i]}, short ? "" : `${i + 1}. `, el("span", {class: "row-label"}, labels[i])),
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

function heatRgb(v) {
  const t = Math.min(1, Math.max(0, v));
  return LOW.map((lo, k) => Math.round(lo + (HIGH[k] - lo) * t));
}

function heatColour(v) {
  const rgb = heatRgb(v);
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

// An SVG element: the namespace is read from the page's own <svg> template (the HTML parser knows it), so this
// file names no URL.
function svg(tag, attrs = {}, ...children) {
  const namespace = document.getElementById("svg-picture").content.firstElementChild.namespaceURI;
  const node = document.createElementNS(namespace, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  node.append(...children.map(String));
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
document.getElementById("key-form").addEventListener("submit", useKey);
start();
