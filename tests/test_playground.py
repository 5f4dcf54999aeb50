"""The playground page and offline /docs: assets served in-process, then every panel driven in headless Chromium against real `bertkit serve` processes."""
from __future__ import annotations

import asyncio
import json
import math
import re
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")

import bertkit  # noqa: E402
from bertkit.cli import main as cli  # noqa: E402
from bertkit.errors import BertkitError  # noqa: E402
from helpers import ServeProcess, serving, without_precision  # noqa: E402

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # the browser tests skip; the in-process ones still run
    webdriver = None

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
KEY = "playground-key"
BANK = ["I sat on the river bank and watched the water.", "She deposited the cheque at the bank.",
        "The bank raised its interest rates again."]
WAIT = 60  # seconds an explicit wait may take on a busy 2-core machine before it fails
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # four servers share two cores; tiny requests need no threads


# -- in-process: what is served, and to whom -----------------------------------------------------------
def fetch_all(model, paths, headers=None, **settings) -> dict[str, httpx.Response]:
    async def go():
        async with serving(model, warmup=False, **settings) as client:
            return {p: await client.get(p, headers=headers) for p in paths}

    return asyncio.run(go())


def references(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)


def test_the_page_and_the_docs_load_nothing_from_another_host(tiny_cls):
    pages = fetch_all(tiny_cls, ["/", "/docs", "/redoc", "/openapi.json"])
    page = pages["/"]
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://", page.text), "the page names another host"
    assert pages["/docs"].status_code == 200
    assert not [r for r in references(pages["/docs"].text) if re.match(r"(https?:)?//", r)], "/docs loads from a CDN"
    assert pages["/redoc"].status_code == 404  # off: ReDoc fetches its logo from a CDN
    assets = {r for p in ("/", "/docs") for r in references(pages[p].text) if not r.startswith("data:")}
    assets = {("/" + a) if not a.startswith("/") else a for a in assets} - {"/docs"}
    assert {"/static/playground.js", "/static/playground.css", "/static/docs/swagger-ui-bundle.js",
            "/static/docs/swagger-ui.css"} <= assets
    served = fetch_all(tiny_cls, sorted(assets))
    assert {a: r.status_code for a, r in served.items()} == {a: 200 for a in assets}
    assert not re.search(r"https?://", served["/static/playground.js"].text + served["/static/playground.css"].text)
    # The page and the docs are for browsers, not part of the API the schema describes.
    assert not [p for p in pages["/openapi.json"].json()["paths"] if p in ("/", "/docs") or p.startswith("/static")]


def test_the_page_opens_without_a_key_while_the_api_needs_one(tiny_cls):
    paths = ["/", "/static/playground.js", "/static/playground.css", "/docs", "/static/docs/swagger-ui-bundle.js",
             "/static/docs/swagger-ui.css", "/openapi.json", "/v1/model"]
    anonymous = fetch_all(tiny_cls, paths, api_key=KEY)
    keyed = fetch_all(tiny_cls, ["/v1/model"], headers={"Authorization": f"Bearer {KEY}"}, api_key=KEY)
    assert anonymous["/v1/model"].status_code == 401 and keyed["/v1/model"].status_code == 200
    assert {p: r.status_code for p, r in anonymous.items() if p != "/v1/model"} == {p: 200 for p in paths[:-1]}


# -- a real server and a real browser ----------------------------------------------------------------------
def need_a_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(f"browser tests need Chromium and chromedriver ({', '.join(missing)} missing: "
                    "apt-get install chromium chromium-driver)")
    if webdriver is None:
        pytest.skip("browser tests need selenium (pip install -r requirements.txt)")


@pytest.fixture(scope="module")
def browser(servers):
    """One headless Chromium for the module, with its console log readable (it quits before the servers stop)."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000",
                "--disable-extensions", "--no-first-run", "--disable-background-networking"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # A driver path given: Selenium Manager (which would download one) never runs.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def servers(minilm_dir, tiny_mlm_dir, tiny_cls_dir):
    """One server per model, started together so their start-ups overlap."""
    need_a_browser()  # before paying for four start-ups
    started = {name: ServeProcess(model, *flags, env=ONE_THREAD).start() for name, model, *flags in (
        ("minilm", minilm_dir), ("mlm", tiny_mlm_dir), ("cls", tiny_cls_dir), ("keyed", tiny_cls_dir, "--api-key", KEY))}
    try:
        yield {name: s.ready() for name, s in started.items()}
    finally:
        for s in started.values():
            s.stop(graceful=False)  # a graceful stop (test_serve_process's subject) of four servers costs ~7 s here


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("playground-screenshots")


def wait(driver, condition, what: str):
    return WebDriverWait(driver, WAIT).until(condition, message=f"waited {WAIT} s for {what}")


def open_page(driver, url: str) -> None:
    """The playground of the server at `url`, loaded once: later calls reuse it (each test reads its own log)."""
    if driver.current_url == url + "/":
        driver.get_log("browser")  # what a failed test before this one left unread
        return
    driver.get(url + "/")
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"), "the page to start")
    # The page asks each endpoint the model cannot serve for its reason: those 400s are meant.
    off = [path for path, ok in httpx.get(url + "/v1/model").json()["endpoints"].items() if not ok]
    assert console_errors(driver, *(refused(path, 400) for path in off)) == []


def panel(driver, name: str):
    return driver.find_element(By.ID, name)


def fill(driver, element_id: str, text: str) -> None:
    box = driver.find_element(By.ID, element_id)
    box.clear()
    box.send_keys(text)


def send(driver, name: str, how) -> str:
    """Submit a panel with `how()` (a click or a key) and wait for its answer; returns done or error."""
    section = panel(driver, name)
    before = int(section.get_attribute("data-runs") or 0)
    how()
    wait(driver, lambda d: int(section.get_attribute("data-runs") or 0) > before, f"the {name} panel's answer")
    return section.get_attribute("data-status")


def click(driver, name: str):
    return lambda: panel(driver, name).find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def keys(driver, element_id: str, *chord):
    return lambda: driver.find_element(By.ID, element_id).send_keys(*chord)


def ctrl_enter(driver, element_id: str):
    return keys(driver, element_id, Keys.CONTROL, Keys.ENTER)


def console_errors(driver, *expected: str) -> list[str]:
    """Console errors since the last call, less the failed requests a step causes on purpose (regexes)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"
            and not any(re.search(p, e["message"]) for p in expected)]


def refused(path: str, status: int) -> str:
    return rf"{re.escape(path)} - Failed to load resource: the server responded with a status of {status}\b"


def shot(driver, element, path: Path) -> None:
    """A screenshot of one element, whole: the window first grows to the page's height."""
    size = driver.get_window_size()
    driver.set_window_size(size["width"], driver.execute_script("return document.documentElement.scrollHeight") + 100)
    driver.execute_script("window.scrollTo(0, 0)")
    try:
        element.screenshot(str(path))
    finally:
        driver.set_window_size(size["width"], size["height"])


def cells(section, kind: str) -> np.ndarray:
    table = section.find_element(By.CSS_SELECTOR, f"table.heatmap[data-kind={kind}]")
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    values = [[(float(td.get_attribute("data-value")), td.text) for td in tr.find_elements(By.TAG_NAME, "td")]
              for tr in rows]
    shown = np.array([[float(text) for _, text in row] for row in values])
    exact = np.array([[v for v, _ in row] for row in values])
    assert np.all(np.abs(shown - exact) <= 0.0005 + 1e-9), "a cell's number is not its value to 3 decimals"
    return exact


def assert_printed_equal(exact: np.ndarray, want: np.ndarray) -> None:
    """The page's numbers equal the reference: their full values within float32 noise, their 3 decimals alike."""
    want = np.asarray(want, dtype=np.float64)
    assert exact.shape == want.shape
    assert np.abs(exact - want).max() < 1e-5
    assert np.all(np.abs(np.round(exact, 3) - np.round(want, 3)) <= 0.001 + 1e-9)


def cli_json(capsys, *argv):
    code = cli(list(argv) + ["--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return without_precision(json.loads(out))


# -- the panels --------------------------------------------------------------------------------------------------
def test_tokenize_shows_the_pieces_and_ids_the_cli_prints(browser, servers, shots, capsys, minilm_dir):
    open_page(browser, servers["minilm"])
    text = "Hello, BERT! Tokenizers split unaffable words."
    fill(browser, "tokenize-text", text)
    assert send(browser, "tokenize", ctrl_enter(browser, "tokenize-text")) == "done"  # Ctrl+Enter in a textarea
    section = panel(browser, "tokenize")
    pieces = section.find_elements(By.CSS_SELECTOR, "ol.tokens li")
    (want,) = cli_json(capsys, "tokenize", "--model", str(minilm_dir), text)
    assert [p.get_attribute("data-token") for p in pieces] == want["tokens"]
    assert [int(p.get_attribute("data-id")) for p in pieces] == want["ids"]
    assert [[int(p.get_attribute("data-start")), int(p.get_attribute("data-end"))] for p in pieces] == want["offsets"]
    assert [p.get_attribute("data-word") for p in pieces] == ["" if w is None else str(w) for w in want["word_ids"]]
    assert [p.find_element(By.CLASS_NAME, "piece").text for p in pieces] == want["tokens"]
    assert [p.find_element(By.CLASS_NAME, "id").text for p in pieces] == [str(i) for i in want["ids"]]
    assert pieces[0].text.startswith("[CLS]") and pieces[-1].text.startswith("[SEP]")
    assert "special" in pieces[0].get_attribute("class")
    fill(browser, "tokenize-pair", "And a second text.")  # a pair, sent with Enter in the one-line box
    assert send(browser, "tokenize", keys(browser, "tokenize-pair", Keys.ENTER)) == "done"
    (pair,) = cli_json(capsys, "tokenize", "--model", str(minilm_dir), text, "--pair", "And a second text.")
    pieces = section.find_elements(By.CSS_SELECTOR, "ol.tokens li")
    assert [p.get_attribute("data-token") for p in pieces] == pair["tokens"]
    assert ["second" in p.get_attribute("class") for p in pieces] == [t == 1 for t in pair["type_ids"]]
    assert len(section.find_elements(By.CSS_SELECTOR, "p.source")) == 2  # both texts, words coloured
    fill(browser, "tokenize-pair", "")
    assert send(browser, "tokenize", click(browser, "tokenize")) == "done"
    pieces = section.find_elements(By.CSS_SELECTOR, "ol.tokens li")
    model = httpx.get(servers["minilm"] + "/v1/model").json()
    count = section.find_element(By.CLASS_NAME, "count")
    assert count.get_attribute("data-count") == str(len(want["tokens"]))
    assert count.get_attribute("data-limit") == str(model["max_length"])
    assert f"{len(want['tokens'])} tokens of the {model['max_length']}" in count.text
    shot(browser, section, shots / "tokenize.png")
    assert console_errors(browser) == []


def test_a_panel_the_model_cannot_serve_says_why(browser, servers, shots):
    open_page(browser, servers["minilm"])  # MiniLM: no masked-LM head, no classifier
    for name, head in (("fill-mask", "masked-LM head"), ("predict", "classifier head")):
        section = panel(browser, name)
        assert section.get_attribute("data-status") == "off"
        reason = section.find_element(By.CLASS_NAME, "off-reason").text
        message = httpx.post(f"{servers['minilm']}/v1/{name}", json={}).json()["error"]["message"]
        assert reason == f"Off for this model: {message}" and head in reason
        assert not section.find_element(By.CSS_SELECTOR, "button[type=submit]").is_enabled()
    shot(browser, panel(browser, "fill-mask"), shots / "fill-mask-off.png")
    assert console_errors(browser) == []


def test_sentence_similarity_is_the_cosine_of_the_returned_vectors(browser, servers, shots, minilm):
    open_page(browser, servers["minilm"])
    texts = ["A man is playing a guitar.", "Someone strums a guitar on stage.", "The stock market fell sharply today.",
             "Shares dropped after the earnings report."]
    fill(browser, "embed-texts", "\n".join(texts))
    assert send(browser, "embed", ctrl_enter(browser, "embed-texts")) == "done"
    vectors = minilm.embed(texts).astype(np.float64)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    want = unit @ unit.T
    section = panel(browser, "embed")
    assert_printed_equal(cells(section, "sentences"), want)
    nearest = section.find_elements(By.CSS_SELECTOR, "ol.nearest li")
    expected = np.where(np.eye(len(texts), dtype=bool), -np.inf, want).argmax(axis=1).tolist()
    assert [int(li.get_attribute("data-nearest")) for li in nearest] == expected == [1, 0, 3, 2]
    shot(browser, section, shots / "sentence-similarity.png")
    assert console_errors(browser) == []


def test_word_in_context_heatmaps_are_the_models_similarity_matrix(browser, servers, shots, minilm):
    open_page(browser, servers["minilm"])
    fill(browser, "similarity-sentences", "\n".join(BANK))
    fill(browser, "similarity-word", "bank")
    Select(browser.find_element(By.ID, "similarity-layer")).select_by_value("3")
    assert send(browser, "similarity", keys(browser, "similarity-word", Keys.ENTER)) == "done"  # Enter in a line
    section = panel(browser, "similarity")
    want = minilm.similarity_matrix(BANK, "bank", layer=3)
    assert_printed_equal(cells(section, "context"), want.matrix)
    assert_printed_equal(cells(section, "static"), want.static)  # all 1.0: one vector for the word everywhere
    assert "cosine 1.000 for every pair" in section.text
    # Another layer redraws at once.
    assert send(browser, "similarity",
                lambda: Select(browser.find_element(By.ID, "similarity-layer")).select_by_value("-1")) == "done"
    assert_printed_equal(cells(section, "context"), minilm.similarity_matrix(BANK, "bank").matrix)
    assert "layer -1" in section.text
    shot(browser, section, shots / "word-in-context.png")
    shot(browser, browser.find_element(By.TAG_NAME, "body"), shots / "page.png")  # the whole page, answers shown
    assert console_errors(browser) == []


def test_the_layout_holds_at_400_px_and_every_input_has_a_label(browser, servers, shots):
    open_page(browser, servers["minilm"])
    browser.set_window_size(400, 900)
    try:
        wait(browser, lambda d: d.execute_script("return window.innerWidth") <= 400, "the narrow window")
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px at 400 px"
        shot(browser, browser.find_element(By.TAG_NAME, "body"), shots / "narrow.png")
    finally:
        browser.set_window_size(1280, 1000)
    unlabelled = browser.execute_script(
        "return [...document.querySelectorAll('input, select, textarea')].filter(e => !e.labels.length).map(e => e.id)")
    assert unlabelled == []
    assert console_errors(browser) == []


def test_an_error_shows_the_servers_one_line_reason(browser, servers, minilm):
    open_page(browser, servers["minilm"])
    sentences = BANK[:2] + ["A sentence about something else entirely."]
    fill(browser, "similarity-sentences", "\n".join(sentences))
    assert send(browser, "similarity", click(browser, "similarity")) == "error"
    with pytest.raises(BertkitError) as failure:
        minilm.similarity_matrix(sentences, "bank")
    section = panel(browser, "similarity")
    error = section.find_element(By.CSS_SELECTOR, ".error")
    assert error.is_displayed() and error.text == str(failure.value)
    assert error.get_attribute("data-type") == "invalid_input"
    assert section.find_elements(By.CSS_SELECTOR, ".output *") == []  # the old heatmap is gone, not left to mislead
    assert console_errors(browser, refused("/v1/similarity", 422)) == []


def test_fill_mask_candidates_are_the_models(browser, servers, shots, tiny_mlm_dir):
    open_page(browser, servers["mlm"])
    model = bertkit.load(tiny_mlm_dir, device="cpu")
    text = "The [MASK] sat on the [MASK]."
    fill(browser, "fill-mask-text", text)
    fill(browser, "fill-mask-top_k", "4")
    assert send(browser, "fill-mask", click(browser, "fill-mask")) == "done"
    section = panel(browser, "fill-mask")

    def shown():
        return [[(row.get_attribute("data-token"), float(row.get_attribute("data-score")))
                 for row in figure.find_elements(By.CLASS_NAME, "bar-row")]
                for figure in section.find_elements(By.CSS_SELECTOR, "figure.bars")]

    def expect(masks):
        got = shown()
        assert [[t for t, _ in m] for m in got] == [[c["token"] for c in m] for m in masks]
        for g, w in zip(got, masks):
            assert all(math.isclose(s, c["score"], rel_tol=1e-4) for (_, s), c in zip(g, w))

    (want,) = model.fill_mask([text], top_k=4)
    assert len(want) == 2 and all(len(m) == 4 for m in want)
    expect(want)
    fill(browser, "fill-mask-targets", "cat, dog, unaffable")  # a multi-piece target too
    assert send(browser, "fill-mask", click(browser, "fill-mask")) == "done"
    (want,) = model.fill_mask([text], targets=["cat", "dog", "unaffable"])
    expect(want)
    shot(browser, section, shots / "fill-mask.png")
    assert panel(browser, "predict").get_attribute("data-status") == "off"
    assert console_errors(browser) == []


def test_classify_shows_every_labels_score(browser, servers, shots, tiny_cls):
    open_page(browser, servers["cls"])
    texts = ["What a wonderful film!", "Dull, long and far too loud."]
    fill(browser, "predict-texts", "\n".join(texts))
    assert send(browser, "predict", ctrl_enter(browser, "predict-texts")) == "done"
    boxes = panel(browser, "predict").find_elements(By.CLASS_NAME, "prediction")
    want = tiny_cls.predict(texts)
    assert [b.get_attribute("data-label") for b in boxes] == [w["label"] for w in want]
    for box, w in zip(boxes, want):
        rows = box.find_elements(By.CLASS_NAME, "bar-row")
        shown = {r.get_attribute("data-name"): float(r.get_attribute("data-score")) for r in rows}
        assert shown.keys() == w["scores"].keys()
        assert all(math.isclose(shown[k], v, rel_tol=1e-4) for k, v in w["scores"].items())
    shot(browser, panel(browser, "predict"), shots / "classify.png")
    assert panel(browser, "fill-mask").get_attribute("data-status") == "off"
    assert console_errors(browser) == []


def test_docs_render_offline(browser, servers, shots):
    paths = set(httpx.get(servers["cls"] + "/openapi.json").json()["paths"])
    browser.get(servers["cls"] + "/docs")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")) >= len(paths),
         "Swagger UI to list the endpoints")
    listed = {e.get_attribute("data-path") for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert listed == paths
    browser.save_screenshot(str(shots / "docs.png"))
    assert console_errors(browser) == []


def test_with_an_api_key_the_page_asks_for_it_once(browser, servers):
    browser.get(servers["keyed"] + "/")
    form = browser.find_element(By.ID, "key-form")
    wait(browser, lambda d: form.is_displayed(), "the page to ask for the key")
    assert "API key" in browser.find_element(By.ID, "key-why").text
    browser.find_element(By.ID, "api-key").send_keys(KEY, Keys.ENTER)
    wait(browser, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"), "the page to start")
    fill(browser, "tokenize-text", "Hello, BERT!")
    assert send(browser, "tokenize", click(browser, "tokenize")) == "done"
    pieces = panel(browser, "tokenize").find_elements(By.CSS_SELECTOR, "ol.tokens li")
    assert [p.get_attribute("data-token") for p in pieces] == ["[CLS]", "hello", ",", "bert", "!", "[SEP]"]
    assert not form.is_displayed()
    assert console_errors(browser, refused("/v1/model", 401), refused("/openapi.json", 401),
                          refused("/v1/fill-mask", 400), refused("/v1/search", 400)) == []


# -- attention, and the panels built from the schema ---------------------------------------------------------------
CAT = "The cat sat on the mat because it was tired."


def test_attention_shows_the_models_weights_and_the_grid_picks_a_head(browser, servers, shots, minilm):
    open_page(browser, servers["minilm"])
    section = panel(browser, "attention")
    fill(browser, "attention-text", CAT)
    Select(browser.find_element(By.ID, "attention-layer")).select_by_value("2")
    Select(browser.find_element(By.ID, "attention-head")).select_by_value("3")
    assert send(browser, "attention", ctrl_enter(browser, "attention-text")) == "done"
    (want,) = minilm.attention([CAT])
    n = len(want.tokens)
    assert_printed_equal(cells(section, "attention"), want.head(2, 3))
    # The head view: a line from every token to every token, as opaque as the attention it stands for.
    lines = section.find_elements(By.CSS_SELECTOR, "svg.head-view line")
    opacity = np.array([float(line.get_attribute("stroke-opacity")) for line in lines]).reshape(n, n)
    assert np.abs(opacity - want.head(2, 3)).max() <= 0.0005 + 1e-9
    assert [t.text for t in section.find_elements(By.CSS_SELECTOR, "svg.head-view text.from")] == want.tokens
    # The grid: every layer and head; the one shown is pressed, and clicking another shows it.
    grid = section.find_elements(By.CSS_SELECTOR, ".attention-grid button.cell")
    assert [(int(c.get_attribute("data-layer")), int(c.get_attribute("data-head"))) for c in grid] == \
        [(layer, head) for layer in range(6) for head in range(12)]
    pressed = section.find_element(By.CSS_SELECTOR, ".attention-grid [aria-pressed=true]")
    assert (pressed.get_attribute("data-layer"), pressed.get_attribute("data-head")) == ("2", "3")
    section.find_element(By.CSS_SELECTOR, '.attention-grid [data-layer="0"][data-head="2"]').click()
    assert_printed_equal(cells(section, "attention"), want.head(0, 2))
    assert Select(browser.find_element(By.ID, "attention-layer")).first_selected_option.text == "0"
    focus = section.find_element(By.CLASS_NAME, "focus").text
    assert focus.startswith("Layer 0, head 2") and f"previous {100 * want.focus['previous'][0, 2]:.0f}%" in focus
    shot(browser, section, shots / "attention.png")
    # A pair: its second text's tokens are marked; the head chosen stays chosen.
    fill(browser, "attention-pair", "It slept all day.")
    assert send(browser, "attention", click(browser, "attention")) == "done"
    (pair,) = minilm.attention([CAT], ["It slept all day."])
    assert_printed_equal(cells(section, "attention"), pair.head(0, 2))
    marked = section.find_elements(By.CSS_SELECTOR, "svg.head-view text.from.second")
    assert len(marked) == sum(pair.type_ids)
    fill(browser, "attention-pair", "")
    browser.set_window_size(400, 900)
    try:
        wait(browser, lambda d: d.execute_script("return window.innerWidth") <= 400, "the narrow window")
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px at 400 px"
        shot(browser, section, shots / "attention-narrow.png")
    finally:
        browser.set_window_size(1280, 1000)
    assert console_errors(browser) == []


def test_attention_over_the_answer_budget_says_so_in_one_line(browser, servers, minilm):
    open_page(browser, servers["minilm"])
    fill(browser, "attention-text", "word " * 120)  # 122 tokens x 72 heads: over the default 8 MiB answer
    assert send(browser, "attention", click(browser, "attention")) == "error"
    section = panel(browser, "attention")
    error = section.find_element(By.CSS_SELECTOR, ".error")
    assert error.get_attribute("data-type") == "limit_exceeded"
    assert "--max-answer-bytes" in error.text and "fewer layers or heads" in error.text and "\n" not in error.text
    assert section.find_elements(By.CSS_SELECTOR, ".output *") == []
    assert console_errors(browser, refused("/v1/attention", 422)) == []


def test_a_task_without_a_panel_of_its_own_gets_one_from_its_schema(browser, servers, tiny_cls):
    open_page(browser, servers["cls"])
    openapi = httpx.get(servers["cls"] + "/openapi.json").json()
    endpoints = httpx.get(servers["cls"] + "/v1/model").json()["endpoints"]
    shown = [s.get_attribute("id") for s in browser.find_elements(By.CSS_SELECTOR, "main.panels > section.panel")]
    assert {f"/v1/{name}" for name in shown} >= set(endpoints)  # every endpoint the server has, a panel
    section = panel(browser, "rerank")
    assert section.find_element(By.TAG_NAME, "h2").text == "Rerank"
    assert openapi["paths"]["/v1/rerank"]["post"]["summary"] in section.find_element(By.CLASS_NAME, "lead").text
    assert section.get_attribute("data-status") == "ready"
    texts = ["Paris is the capital of France.", "Berlin is in Germany.", "Bread is baked."]
    fill(browser, "rerank-query", "What is the capital of France?")
    fill(browser, "rerank-texts", "\n".join(texts))
    assert send(browser, "rerank", click(browser, "rerank")) == "done"
    shown = json.loads(section.find_element(By.CSS_SELECTOR, "pre.json").text)
    want = tiny_cls.rerank("What is the capital of France?", texts)
    assert [r["index"] for r in shown] == [r["index"] for r in want]
    assert all(math.isclose(a["score"], b["score"], rel_tol=1e-5) for a, b in zip(shown, want))
    search = panel(browser, "search")  # no --index: off, with the server's reason
    assert search.get_attribute("data-status") == "off" and "--index" in search.find_element(By.CLASS_NAME, "off-reason").text
    assert console_errors(browser) == []


def test_a_long_text_classified_in_windows_says_how_many(browser, servers, tiny_cls):
    open_page(browser, servers["cls"])
    section = panel(browser, "predict")
    text = "A long and winding review of a film that goes on. " * 120  # ~1,300 tokens: three 512-token windows
    fill(browser, "predict-texts", text)
    assert send(browser, "predict", click(browser, "predict")) == "done"
    assert section.find_elements(By.CSS_SELECTOR, ".prediction .windows") == []  # truncated: one window, no note
    more = section.find_element(By.CSS_SELECTOR, "details.options")
    more.find_element(By.TAG_NAME, "summary").click()  # the long-document options are under "More options"
    long = Select(browser.find_element(By.ID, "predict-long"))
    try:
        assert send(browser, "predict", lambda: long.select_by_value("chunk")) == "done"  # a new choice sends again
        (want,) = tiny_cls.predict([text], long="chunk")
        note = section.find_element(By.CSS_SELECTOR, ".prediction .windows").text
        assert want["windows"] > 1 and note == f"A long text: read in {want['windows']} windows, their scores combined"
    finally:
        send(browser, "predict", lambda: long.select_by_value(""))
        more.find_element(By.TAG_NAME, "summary").click()
    assert console_errors(browser) == []
