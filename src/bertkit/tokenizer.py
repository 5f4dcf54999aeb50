"""BERT WordPiece tokenizer: a thin wrapper over Hugging Face `tokenizers` that never pads and reports truncation."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers, processors
from tokenizers import Encoding as _HFEncoding
from tokenizers import Tokenizer as _HFTokenizer
from tokenizers.models import WordPiece

from bertkit.errors import BertkitError

__all__ = ["Encoding", "Tokenizer"]

TOKENIZER_JSON = "tokenizer.json"
VOCAB_TXT = "vocab.txt"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"

# transformers writes VERY_LARGE_INTEGER (~1e30) when a checkpoint has no real limit.
_MAX_SANE_MODEL_LENGTH = 1_000_000
# Truncating copies are cached per max_length; a handful covers every real workload.
_MAX_TRUNCATORS = 8

_SPECIAL_KEYS = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


@dataclass
class Encoding:
    """One encoded text (or text pair); offsets are character spans into the text each token came from."""

    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    word_ids: list[int | None]
    type_ids: list[int]
    special_tokens_mask: list[int]
    sequence_ids: list[int | None] = field(default_factory=list)
    n_truncated: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokens": list(self.tokens),
            "ids": list(self.ids),
            "offsets": [[a, b] for a, b in self.offsets],
            "word_ids": list(self.word_ids),
            "type_ids": list(self.type_ids),
            "special_tokens_mask": list(self.special_tokens_mask),
            "n_truncated": self.n_truncated,
        }

    def _repr_html_(self) -> str:  # a notebook shows the tokens as a table (bertkit.display)
        from bertkit.display import encoding_html

        return encoding_html(self)


def _from_hf(enc: _HFEncoding, n_truncated: int = 0) -> Encoding:
    return Encoding(
        ids=enc.ids,
        tokens=enc.tokens,
        offsets=enc.offsets,
        word_ids=enc.word_ids,
        type_ids=enc.type_ids,
        special_tokens_mask=enc.special_tokens_mask,
        sequence_ids=enc.sequence_ids,
        n_truncated=n_truncated,
    )


def _sane_max_length(value: Any) -> int | None:
    # bool is an int subclass; a stray `true` in a config must not become a length of 1.
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    if value <= 0 or value > _MAX_SANE_MODEL_LENGTH:
        return None
    return value


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BertkitError(f"could not read {path}: {exc}; fix or delete that file") from None
    if not isinstance(data, dict):
        raise BertkitError(f"{path} should hold a JSON object; fix or delete that file")
    return data


def _token_name(value: Any) -> str | None:
    # transformers stores special tokens either as plain strings or as serialized AddedToken dicts.
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _bert_normalizer_state(tok: _HFTokenizer) -> dict[str, Any] | None:
    state = json.loads(tok.to_str()).get("normalizer")
    if isinstance(state, dict) and state.get("type") == "BertNormalizer":
        return state
    return None


class Tokenizer:
    """WordPiece tokenizer with BERT's [CLS]/[SEP] template; it never pads, and truncates only when asked."""

    def __init__(
        self,
        tokenizer: _HFTokenizer,
        *,
        model_max_length: int | None = None,
        unk_token: str = "[UNK]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        cls_token: str = "[CLS]",
        mask_token: str = "[MASK]",
    ) -> None:
        # A tokenizer.json saved for serving often carries fixed padding/truncation; we pack unpadded
        # batches and truncate per call, so both must be off on the shared object.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tok = tokenizer
        self.model_max_length = _sane_max_length(model_max_length)
        self._special_names = {
            "unk_token": unk_token,
            "sep_token": sep_token,
            "pad_token": pad_token,
            "cls_token": cls_token,
            "mask_token": mask_token,
        }
        ids: dict[str, int] = {}
        for key, name in self._special_names.items():
            i = tokenizer.token_to_id(name)
            if i is None:
                raise BertkitError(
                    f"special token {name!r} ({key}) is not in the vocabulary; "
                    f"pass {key}=... with the name this vocabulary uses"
                )
            ids[key] = i
        self._special_ids = ids
        # Without this, "[MASK]" typed into text would be split into "[", "mask", "]" by the pre-tokenizer.
        registered = {t.content for t in tokenizer.get_added_tokens_decoder().values()}
        missing = [n for n in self._special_names.values() if n not in registered]
        if missing:
            tokenizer.add_special_tokens([AddedToken(n, special=True, normalized=False) for n in missing])
        self._truncators: dict[int, _HFTokenizer] = {}
        self._lock = threading.Lock()

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_dir(cls, path: str | Path) -> "Tokenizer":
        """Load from a model folder: tokenizer.json if present, else vocab.txt plus the optional configs."""
        directory = Path(path)
        if not directory.is_dir():
            raise BertkitError(
                f"{directory} is not a directory; pass the model folder that holds tokenizer.json or vocab.txt"
            )
        config: dict[str, Any] = {}
        if (directory / TOKENIZER_CONFIG).is_file():
            config = _read_json(directory / TOKENIZER_CONFIG)
        specials: dict[str, str] = {}
        # special_tokens_map.json is what transformers itself writes last, so it wins over the config.
        sources = [config]
        if (directory / SPECIAL_TOKENS_MAP).is_file():
            sources.append(_read_json(directory / SPECIAL_TOKENS_MAP))
        for source in sources:
            for key in _SPECIAL_KEYS:
                name = _token_name(source.get(key))
                if name is not None:
                    specials[key] = name
        model_max_length = _sane_max_length(config.get("model_max_length"))

        if (directory / TOKENIZER_JSON).is_file():
            tok = cls.from_tokenizer_json(directory / TOKENIZER_JSON, model_max_length, **specials)
            tok._apply_config_normalizer(config)
            return tok
        if (directory / VOCAB_TXT).is_file():
            return cls.from_vocab(
                directory / VOCAB_TXT,
                lowercase=bool(config.get("do_lower_case", True)),
                strip_accents=config.get("strip_accents"),
                tokenize_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
                model_max_length=model_max_length,
                **specials,
            )
        raise BertkitError(
            f"no tokenizer.json or vocab.txt in {directory}; "
            "point at a BERT model folder or copy its tokenizer files there"
        )

    @classmethod
    def from_tokenizer_json(
        cls,
        path: str | Path,
        model_max_length: int | None = None,
        *,
        unk_token: str | None = None,
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        cls_token: str = "[CLS]",
        mask_token: str = "[MASK]",
    ) -> "Tokenizer":
        """Load a serialized `tokenizers` pipeline; its own padding and truncation settings are discarded."""
        file = Path(path)
        if not file.is_file():
            raise BertkitError(f"{file} does not exist; pass the path of a tokenizer.json file")
        try:
            tok = _HFTokenizer.from_file(str(file))
        except Exception as exc:  # the Rust side raises plain Exception for any parse problem
            raise BertkitError(f"could not load {file}: {exc}; re-save it with transformers or tokenizers") from None
        if unk_token is None:
            # The model knows its own unknown token; trusting it avoids a mismatch with a custom vocab.
            unk_token = getattr(tok.model, "unk_token", None) or "[UNK]"
        return cls(
            tok,
            model_max_length=model_max_length,
            unk_token=unk_token,
            sep_token=sep_token,
            pad_token=pad_token,
            cls_token=cls_token,
            mask_token=mask_token,
        )

    @classmethod
    def from_vocab(
        cls,
        vocab_path: str | Path,
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        model_max_length: int | None = None,
        unk_token: str = "[UNK]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        cls_token: str = "[CLS]",
        mask_token: str = "[MASK]",
    ) -> "Tokenizer":
        """Build the same pipeline transformers' BertTokenizerFast builds from a vocab.txt."""
        file = Path(vocab_path)
        if not file.is_file():
            raise BertkitError(f"{file} does not exist; pass the path of a BERT vocab.txt")
        try:
            # Use the library's own reader so line handling matches what transformers does with the same file.
            vocab = WordPiece.read_file(str(file))
        except Exception as exc:
            raise BertkitError(
                f"could not read {file}: {exc}; pass a UTF-8 vocab.txt with one token per line"
            ) from None
        if not vocab:
            raise BertkitError(f"{file} is empty; pass a BERT vocab.txt with one token per line")
        names = {
            "unk_token": unk_token,
            "sep_token": sep_token,
            "pad_token": pad_token,
            "cls_token": cls_token,
            "mask_token": mask_token,
        }
        for key, name in names.items():
            # Registering a missing special would mint an id past the model's embedding table.
            if name not in vocab:
                raise BertkitError(
                    f"special token {name!r} ({key}) is not in {file}; "
                    f"pass {key}=... with the name this vocabulary uses"
                )
        tok = _HFTokenizer(
            WordPiece(vocab, unk_token=unk_token, continuing_subword_prefix="##", max_input_chars_per_word=100)
        )
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=tokenize_chinese_chars,
            # None keeps HF's rule that accents are stripped exactly when lowercasing.
            strip_accents=strip_accents,
            lowercase=lowercase,
        )
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls_token}:0 $A:0 {sep_token}:0",
            pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
            special_tokens=[(cls_token, vocab[cls_token]), (sep_token, vocab[sep_token])],
        )
        # Same registration order as transformers, so added-token bookkeeping matches if anyone diffs the JSON.
        specials = [pad_token, unk_token, cls_token, sep_token, mask_token]
        tok.add_special_tokens([AddedToken(n, special=True, normalized=False) for n in specials])
        return cls(
            tok,
            model_max_length=model_max_length,
            unk_token=unk_token,
            sep_token=sep_token,
            pad_token=pad_token,
            cls_token=cls_token,
            mask_token=mask_token,
        )

    def _apply_config_normalizer(self, config: dict[str, Any]) -> None:
        # transformers lets tokenizer_config.json override the normalizer stored in tokenizer.json;
        # we follow it so the same folder gives the same ids in both libraries.
        state = _bert_normalizer_state(self._tok)
        if state is None:
            return
        wanted = {
            "lowercase": config.get("do_lower_case", state.get("lowercase")),
            "strip_accents": config.get("strip_accents", state.get("strip_accents")),
            "handle_chinese_chars": config.get("tokenize_chinese_chars", state.get("handle_chinese_chars")),
        }
        if all(state.get(k) == v for k, v in wanted.items()):
            return
        self._tok.normalizer = normalizers.BertNormalizer(
            clean_text=bool(state.get("clean_text", True)),
            handle_chinese_chars=bool(wanted["handle_chinese_chars"]),
            strip_accents=wanted["strip_accents"],
            lowercase=bool(wanted["lowercase"]),
        )
        with self._lock:
            self._truncators.clear()

    # ---- vocabulary -----------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def cls_id(self) -> int:
        return self._special_ids["cls_token"]

    @property
    def sep_id(self) -> int:
        return self._special_ids["sep_token"]

    @property
    def pad_id(self) -> int:
        return self._special_ids["pad_token"]

    @property
    def unk_id(self) -> int:
        return self._special_ids["unk_token"]

    @property
    def mask_id(self) -> int:
        return self._special_ids["mask_token"]

    @property
    def mask_token(self) -> str:
        return self._special_names["mask_token"]

    @property
    def special_tokens(self) -> dict[str, str]:
        """Special token names keyed like transformers' special_tokens_map.json."""
        return dict(self._special_names)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        if i < 0:
            return None
        return self._tok.id_to_token(i)

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, model_max_length={self.model_max_length})"

    # ---- encoding -------------------------------------------------------------------------------

    def _n_special(self, is_pair: bool, add_special_tokens: bool) -> int:
        return self._tok.num_special_tokens_to_add(is_pair) if add_special_tokens else 0

    def _check_max_length(self, max_length: int | None, is_pair: bool, add_special_tokens: bool) -> None:
        if max_length is None:
            return
        if isinstance(max_length, bool) or not isinstance(max_length, int):
            raise BertkitError(f"max_length must be an int, got {max_length!r}; pass a whole number of tokens")
        need = self._n_special(is_pair, add_special_tokens)
        # The library silently skips truncation when the budget cannot even hold the special tokens.
        if max_length < max(need, 1):
            raise BertkitError(
                f"max_length={max_length} cannot hold the {need} special tokens; pass max_length >= {max(need, 1)}"
            )

    def _truncator(self, max_length: int) -> _HFTokenizer:
        # A separate copy per length keeps the shared tokenizer immutable, so concurrent encodes
        # (threads in a server) never race on truncation settings.
        with self._lock:
            tok = self._truncators.get(max_length)
            if tok is None:
                if len(self._truncators) >= _MAX_TRUNCATORS:
                    self._truncators.pop(next(iter(self._truncators)))
                tok = _HFTokenizer.from_str(self._tok.to_str())
                tok.enable_truncation(max_length, stride=0, strategy="longest_first", direction="right")
                self._truncators[max_length] = tok
            return tok

    def encode(
        self,
        text: str,
        pair: str | None = None,
        *,
        max_length: int | None = None,
        add_special_tokens: bool = True,
    ) -> Encoding:
        """Encode one text (or a text pair); with max_length, cut longest-first and report how many tokens went."""
        _check_text(text, "text")
        if pair is not None:
            _check_text(pair, "pair")
        self._check_max_length(max_length, pair is not None, add_special_tokens)
        full = self._tok.encode(text, pair, add_special_tokens=add_special_tokens)
        if max_length is None or len(full) <= max_length:
            return _from_hf(full)
        cut = self._truncator(max_length).encode(text, pair, add_special_tokens=add_special_tokens)
        return _from_hf(cut, n_truncated=len(full) - len(cut))

    def encode_batch(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        *,
        max_length: int | None = None,
        add_special_tokens: bool = True,
    ) -> list[Encoding]:
        """Encode many texts in parallel; only over-long items are encoded a second time, truncated."""
        if isinstance(texts, str):
            raise BertkitError("encode_batch() takes a list of texts, not a single str; use encode() for one text")
        texts = list(texts)
        for i, t in enumerate(texts):
            _check_text(t, f"texts[{i}]")
        inputs: list[Any]
        if pairs is None:
            inputs = texts
        else:
            if isinstance(pairs, str):
                raise BertkitError("pairs must be a list of texts, not a single str; pass one pair text per text")
            pairs = list(pairs)
            if len(pairs) != len(texts):
                raise BertkitError(
                    f"got {len(texts)} texts but {len(pairs)} pairs; pass exactly one pair text per text"
                )
            for i, p in enumerate(pairs):
                _check_text(p, f"pairs[{i}]")
            inputs = list(zip(texts, pairs))
        self._check_max_length(max_length, pairs is not None, add_special_tokens)
        if not inputs:
            return []
        full = self._tok.encode_batch(inputs, add_special_tokens=add_special_tokens)
        if max_length is None:
            return [_from_hf(e) for e in full]
        long_idx = [i for i, e in enumerate(full) if len(e) > max_length]
        out = [_from_hf(e) if len(e) <= max_length else None for e in full]
        if long_idx:
            cut = self._truncator(max_length).encode_batch(
                [inputs[i] for i in long_idx], add_special_tokens=add_special_tokens
            )
            for i, e in zip(long_idx, cut):
                out[i] = _from_hf(e, n_truncated=len(full[i]) - len(e))
        return out  # type: ignore[return-value]

    def count_tokens(self, text: str) -> int:
        """How many word pieces `text` makes (no [CLS]/[SEP]), without building their Python lists."""
        _check_text(text, "text")
        return len(self._tok.encode(text, add_special_tokens=False))

    def tokenize(self, text: str) -> list[str]:
        """Word pieces of `text`, without [CLS]/[SEP]."""
        _check_text(text, "text")
        return self._tok.encode(text, add_special_tokens=False).tokens

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Turn ids back into text, joining ## pieces."""
        ids = [int(i) for i in ids]
        n = self.vocab_size
        bad = [i for i in ids if i < 0 or i >= n]
        # The library silently drops unknown ids, which would hide an off-by-one in the caller.
        if bad:
            raise BertkitError(
                f"token id {bad[0]} is outside the vocabulary (0..{n - 1}); pass ids this tokenizer produced"
            )
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def normalize(self, text: str) -> str:
        """The text as the model sees it before splitting (lowercased / accents stripped as configured)."""
        _check_text(text, "text")
        normalizer = self._tok.normalizer
        return normalizer.normalize_str(text) if normalizer is not None else text

    # ---- saving ---------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """Write tokenizer.json, vocab.txt and the transformers configs, loadable by AutoTokenizer."""
        out = Path(directory)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BertkitError(f"cannot create {out}: {exc}; choose a writable directory") from None
        # self._tok never has padding/truncation enabled, so the saved file does not either.
        self._tok.save(str(out / TOKENIZER_JSON))

        vocab = self._tok.get_vocab(with_added_tokens=False)
        by_id = sorted(vocab.items(), key=lambda kv: kv[1])
        # vocab.txt encodes ids as line numbers, so gaps would silently shift every later token.
        if [i for _, i in by_id] != list(range(len(by_id))):
            raise BertkitError(
                "the vocabulary ids are not contiguous, so vocab.txt cannot represent them; save tokenizer.json only"
            )
        (out / VOCAB_TXT).write_text("".join(f"{tok}\n" for tok, _ in by_id), encoding="utf-8")

        state = _bert_normalizer_state(self._tok) or {}
        config: dict[str, Any] = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": bool(state.get("lowercase", False)),
            "strip_accents": state.get("strip_accents"),
            "tokenize_chinese_chars": bool(state.get("handle_chinese_chars", True)),
            "do_basic_tokenize": True,
            "never_split": None,
            "clean_up_tokenization_spaces": True,
            **self._special_names,
        }
        if self.model_max_length is not None:
            config["model_max_length"] = self.model_max_length
        (out / TOKENIZER_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (out / SPECIAL_TOKENS_MAP).write_text(json.dumps(self._special_names, indent=2) + "\n", encoding="utf-8")


def _check_text(value: Any, what: str) -> None:
    # The Rust binding's TypeError for None/bytes is cryptic; name the argument instead.
    if not isinstance(value, str):
        raise BertkitError(f"{what} must be a str, got {type(value).__name__}; convert it to text first")
