"""The README's main command: the "Introduction to BERT" notebook's workflow, offline, done right."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import bertkit


def section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 70 - len(title)))


def show_tokenization(model: bertkit.Model) -> None:
    section("1. Tokenization")
    text = "Hello, BERT!"
    enc = model.tokenizer.encode(text)
    print(f"text:    {text!r}")
    print(f"pieces:  {' '.join(enc.tokens)}")
    print(f"ids:     {' '.join(map(str, enc.ids))}")
    print(f"offsets: {enc.offsets}")
    split = model.tokenizer.encode("Tokenization handles embeddings of unbelievable words.")
    print(f"word pieces keep their word: {list(zip(split.tokens, split.word_ids))[1:8]} ...")


def show_hidden_states(model: bertkit.Model) -> None:
    section("2. Contextual hidden states")
    texts = ["The river bank was muddy.", "BERT reads the whole sentence at once, in both directions."]
    for text, states in zip(texts, model.hidden_states(texts)):
        print(f"{tuple(states.shape)} hidden states (one per token, [CLS] and [SEP] included) for {text!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bertkit demo", description=__doc__)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--device", default=None)
    parser.add_argument("--output-dir", default="demo_output", help="where plots and the fine-tuned model go")
    args = parser.parse_args(argv)
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    try:
        model = bertkit.load(args.model, device=args.device)
    except bertkit.BertkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"loaded {model!r}")
    show_tokenization(model)
    show_hidden_states(model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
