"""Rich display: results show as HTML or PNG in a notebook (escaped, well formed) and stay plain data in Python."""
from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from bertkit.display import Results, html_of
from bertkit.train.trainer import TrainResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VOID = {"img", "br", "hr", "meta", "input"}
HOSTILE = "<script>alert('x')</script> & friends"  # user text that would run or break the page if not escaped
ROOT = Path(__file__).resolve().parents[1]


class _Checker(HTMLParser):
    """Fails on a closing tag that does not match the open one; collects the text as the browser shows it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        assert tag != "script", "a <script> element reached the page"
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()

    def handle_data(self, data):
        self.text.append(data)


def shown_text(page: str) -> str:
    """The text a browser shows for `page`, after checking that every element is closed in order."""
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert not checker.open, f"unclosed: {checker.open}"
    return "".join(checker.text)


def test_tokenize_shows_a_table_of_escaped_tokens_and_stays_a_list(tiny_mlm):
    answer = tiny_mlm.tokenize([HOSTILE, "Hello, BERT!"])
    assert isinstance(answer, list) and answer == list(answer) and len(answer) == 2
    assert answer[1].tokens == ["[CLS]", "hello", ",", "bert", "!", "[SEP]"]
    assert repr(answer) == repr(list(answer))  # a plain list of Encodings in Python
    page = answer._repr_html_()
    assert "<script>" not in page and "&lt;" in page
    text = shown_text(page)
    for token in answer[0].tokens + answer[1].tokens:
        assert token in text
    assert all(str(i) in text for i in answer[1].ids)
    assert answer[0]._repr_html_() in page  # the list shows each text's own view


def test_fill_mask_shows_the_filled_text_and_ranked_candidates(tiny_mlm):
    answer = tiny_mlm.fill_mask([f"{HOSTILE} [MASK] here."], top_k=3)
    plain = [[list(map(dict, mask)) for mask in text] for text in answer]
    assert json.loads(json.dumps(answer)) == plain  # plain lists of dicts, as before
    assert answer[0].filled.startswith(HOSTILE)
    page = answer._repr_html_()
    text = shown_text(page)
    assert answer[0].filled in text
    assert all(c["token"] in text and f"{c['score']:.4f}" in text for c in answer[0][0])


def test_similarity_matrix_shows_both_matrices_with_escaped_sentences(tiny_mlm):
    sentences = [f"{HOSTILE}: the bank of the river.", "I paid at the bank.", "The bank raised rates."]
    answer = tiny_mlm.similarity_matrix(sentences, "bank")
    assert isinstance(answer.matrix, np.ndarray) and answer.matrix.shape == (3, 3)
    page = answer._repr_html_()
    assert "<script>" not in page
    text = shown_text(page)
    assert "contextual" in text and "static" in text and "'bank'" in text
    assert all(label in text for label in answer.labels)
    assert f"{answer.matrix[0, 1]:.3f}" in text


def test_attention_shows_a_png(tiny_mlm):
    one = tiny_mlm.attention(["The cat sat.", HOSTILE], layers=0, heads=1)
    every = tiny_mlm.attention(["The cat sat."])
    assert isinstance(one[0].weights, np.ndarray) and one[0].weights.shape[:2] == (1, 1)
    assert one[0]._repr_png_().startswith(PNG_MAGIC)  # the head view
    assert every[0]._repr_png_().startswith(PNG_MAGIC)  # the layer x head grid
    page = one._repr_html_()
    assert page.count('<img src="data:image/png;base64,') == 2
    shown_text(page)


def test_a_training_result_shows_its_metrics_and_curves():
    history = [{"step": s, "epoch": s / 4, "split": "train", "loss": 1.0 / s, "lr": 1e-4} for s in range(1, 5)]
    history.append({"step": 4, "epoch": 1.0, "split": "eval", "loss": 0.5, "accuracy": 0.75, "macro_f1": 0.7})
    per_class = {HOSTILE: {"precision": 0.5, "recall": 1.0, "f1": 0.667, "support": 2},
                 "pos": {"precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 2}}
    metrics = {"split": "eval", "step": 4, "accuracy": 0.75, "macro_f1": 0.7, "loss": 0.5, "per_class": per_class}
    result = TrainResult(metrics, None, history, None, 4, False, {"train_s": 1.0})
    page = result._repr_html_()
    assert "<script>" not in page and page.count("data:image/png;base64,") == 1
    text = shown_text(page)
    assert "4 steps" in text and "0.7500" in text and HOSTILE in text
    assert result.summary()["steps"] == 4  # the data are untouched


def test_any_object_has_an_html_view():
    page = html_of({"text": HOSTILE})
    assert HOSTILE not in page and HOSTILE in shown_text(page)
    assert Results([1, 2]) == [1, 2]


def test_nothing_imports_ipython_or_pyplot():
    """Display hooks cost nothing outside a notebook: importing bertkit and rendering load neither."""
    code = ("import sys, bertkit, bertkit.display\n"
            "from bertkit.plots import png\n"
            "from bertkit.train.plots import training_curves\n"
            "assert png(training_curves([])).startswith(b'\\x89PNG')\n"
            "bad = [m for m in ('IPython', 'matplotlib.pyplot') if m in sys.modules]\n"
            "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_progress_bars_use_tqdm_auto():
    """Every progress bar comes from tqdm.auto: a widget in Jupyter, text in a terminal."""
    import ast

    plain = []
    for path in (ROOT / "src" / "bertkit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "tqdm":
                plain.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            elif isinstance(node, ast.Import) and any(alias.name == "tqdm" for alias in node.names):
                plain.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not plain, f"import tqdm.auto instead of tqdm at {plain}"
