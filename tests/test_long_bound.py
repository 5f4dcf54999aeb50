"""A text's cost is bounded before it is tokenized: only what its strategy keeps is read, and what is kept is exactly
what reading the whole text keeps (the cut falls at a space, or far enough from the kept tokens)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bertkit import windows
from bertkit.errors import OptionError
from bertkit.tasks.base import documents
from bertkit.windows import Plan

WORDS = ["unbelievably", "tokenization", "naïve", "café", "Ångström", "e\u0301te\u0301", "İstanbul", "the", "river",
         "[MASK]", "don't", "co-operate", "3.14159", "straße", "ﬁsh", "you're", "U.S.A."]
GAPS = [" ", " ", " ", "\n", "\t", "  ", "\u3000", "\u00a0", " \x0c ", "\r\n"]


def english(n_chars: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    parts, size = [], 0
    while size < n_chars:
        word = WORDS[rng.integers(len(WORDS))] + GAPS[rng.integers(len(GAPS))]
        parts.append(word)
        size += len(word)
    return "".join(parts)


def chinese(n_chars: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return "".join(chr(c) for c in rng.integers(0x4E00, 0x9FA5, n_chars))


def no_spaces(n_chars: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return "".join(WORDS[i].replace(" ", "") + ".," [i % 2] for i in rng.integers(0, len(WORDS), n_chars // 6))


TEXTS = {"english": english, "chinese": chinese, "no spaces": no_spaces}
PLANS = {"truncate": Plan(), "truncate left": Plan(side="left"), "head+tail": Plan(long="head+tail", head=100),
         "head only": Plan(long="head+tail", head=600), "tail only": Plan(long="head+tail", head=0)}


def whole(monkeypatch):
    """Make every text short enough to be read whole: the path before the bound."""
    monkeypatch.setattr(windows, "FIRST_READ", 10 ** 9)


def kept(docs) -> list:
    return [[(w.ids, w.tokens, w.offsets, w.type_ids) for w in d.windows] for d in docs]


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("kind", TEXTS)
def test_the_tokens_kept_of_a_long_text_are_those_the_whole_text_gives(minilm, monkeypatch, kind, plan):
    text = TEXTS[kind](60_000, seed=len(kind))
    reads = []
    real = windows.read_text
    monkeypatch.setattr(windows, "read_text", lambda *a, **k: reads.append(real(*a, **k)) or reads[-1])
    bounded = documents(minilm, [text], None, 128, PLANS[plan])
    assert len(reads[0].text) < 10_000  # what the tokenizer kept tokens of: the ends, not the whole text
    with monkeypatch.context() as m:
        whole(m)
        full = documents(minilm, [text], None, 128, PLANS[plan])
    assert full[0].unread == 0 and kept(bounded) == kept(full)
    if kind == "english":  # the part left out was counted, cut at spaces: the count is exact
        assert bounded[0].unseen == full[0].unseen and bounded[0].unread == 0
    else:  # no space to cut it at: the tokens kept are exact, the count of those cut a lower bound
        assert 0 < bounded[0].unseen <= full[0].unseen and bounded[0].unread > 40_000
    monkeypatch.setattr(windows, "COUNT_CHARS", 1_000)  # past it, what is left out is not even counted
    (past,) = documents(minilm, [text], None, 128, PLANS[plan])
    assert kept([past]) == kept(full) and 0 < past.unseen <= full[0].unseen and past.unread > 40_000


@pytest.mark.parametrize("plan", ["truncate", "truncate left", "head+tail"])
def test_pairs_keep_the_same_tokens_whichever_text_is_long(minilm, monkeypatch, plan):
    long, short = english(12_000, seed=3), "A short question about the river?"
    cases = [([long], [short], 0), ([short], [long], 0), ([short], [long], 1)]  # predict's pairs; rerank's documents
    if plan == "truncate":
        cases.append(([long], [english(10_000, seed=4)], 0))  # the tokenizer's longest-first cut of two long texts
    for texts, pairs, segment in cases:
        if plan != "truncate" and (segment == 0) == (texts[0] == short):
            with pytest.raises(OptionError, match="no room"):  # the text a pair keeps whole cannot be long
                documents(minilm, texts, pairs, 128, PLANS[plan], segment)
            continue
        bounded = documents(minilm, texts, pairs, 128, PLANS[plan], segment)
        with monkeypatch.context() as m:
            whole(m)
            full = documents(minilm, texts, pairs, 128, PLANS[plan], segment)
        assert kept(bounded) == kept(full) and bounded[0].unseen == full[0].unseen


def test_chunk_refuses_a_text_past_max_windows_before_reading_the_rest(minilm, monkeypatch):
    text = english(200_000, seed=5)
    counted = []
    monkeypatch.setattr(minilm.tokenizer, "count_tokens", lambda t: counted.append(len(t)) or len(
        minilm.tokenizer._tok.encode(t, add_special_tokens=False)))
    with pytest.raises(OptionError, match=r"max_windows is 4, but a text needs at least \d+ windows"):
        documents(minilm, [text], None, 128, Plan(long="chunk", max_windows=4))
    assert max(counted) < 20_000  # what 4 windows can hold, not the 200,000 characters
    fits = english(2_000, seed=6)  # a text its windows hold is read whole and windowed as before
    with monkeypatch.context() as m:
        whole(m)
        full = documents(minilm, [fits], None, 128, Plan(long="chunk", max_windows=40))
    assert kept(documents(minilm, [fits], None, 128, Plan(long="chunk", max_windows=40))) == kept(full)


def test_a_long_run_of_spaces_is_read_only_to_the_bound_and_said(minilm):
    text = "a few words first " + " " * 2_000_000 + " and some at the end"
    (doc,) = documents(minilm, [text], None, 64, Plan())
    assert doc.unread > 1_900_000 and doc.windows[0].tokens[1:-1] == ["a", "few", "words", "first"]
    with pytest.raises(OptionError, match="max_windows is 2, but a text is longer than"):
        documents(minilm, [text], None, 64, Plan(long="chunk", max_windows=2))
    with pytest.warns(UserWarning, match="at least 0 tokens cut, 1,99"):
        minilm.tokenize(text, max_length=64)


MEASURE = """
import json, resource, sys, warnings
import bertkit
warnings.simplefilter("ignore")
model = bertkit.load(sys.argv[1], device="cpu")
model.predict(["warm up every lazy import and buffer"])
model.predict(["warm up " * 200], long="head+tail")
words = "the river ran slow past the old mill, unbelievably calm; I sat on the bank to watch. "
text = (words * (int(sys.argv[2]) // len(words) + 1))[: int(sys.argv[2])]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
answers = [model.predict([text])[0]["truncated"], model.predict([text], long="head+tail")[0]["truncated"],
           model.predict([text], long="truncate", side="left")[0]["truncated"]]
try:
    model.predict([text], long="chunk", max_windows=64)
except bertkit.BertkitError as e:
    answers.append(str(e))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grew_mb": (after - before) / 1024, "answers": answers}))
"""


def test_memory_does_not_grow_with_a_multi_megabyte_line(tiny_cls_dir):
    """5 MB on one line: the whole-text path grew by over 1 GB (1.26 GB peak in the issue, 1.29 GB for chunk)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", MEASURE, str(tiny_cls_dir), str(5_000_000)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["grew_mb"] < 100, report
    assert all(isinstance(n, int) and n > 0 for n in report["answers"][:3])
    assert "needs at least" in report["answers"][3] and "max_windows" in report["answers"][3]
