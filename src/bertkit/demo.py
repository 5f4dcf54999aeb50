"""The README's main command: the "Introduction to BERT" notebook's workflow, offline, done right."""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import bertkit

RIVER = "He sat down by the bank to enjoy the view of the river."
MONEY = "She went to the bank to deposit some cash."
MONEY_TOO = "He opened a savings account at the bank downtown."
SENTENCES = [
    "A man is playing a guitar.",
    "Someone is strumming a guitar on stage.",
    "The stock market fell sharply today.",
    "Shares dropped as investors panicked.",
    "A cat sleeps on the warm windowsill.",
]


def section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 72 - len(title)), flush=True)


def show_tokenization(model: bertkit.Model) -> None:
    section("1. Tokenization: text -> word pieces -> ids")
    enc = model.tokenizer.encode("Hello, BERT!")
    print(f"'Hello, BERT!' -> {' '.join(enc.tokens)}")
    print(f"ids            -> {' '.join(map(str, enc.ids))}   ([CLS]=101 and [SEP]=102 frame every text)")
    split = model.tokenizer.encode("Embeddings of unbelievable words")
    pieces = [(t, w) for t, w in zip(split.tokens, split.word_ids) if w is not None]
    print(f"word pieces remember their word: {pieces}")


def show_word_in_context(model: bertkit.Model, out: Path) -> None:
    section("2. The same word in different contexts (the notebook's quiz, done right)")
    matrix = model.similarity_matrix([RIVER, MONEY, MONEY_TOO], "bank")
    names = ["river", "money", "money 2"]
    print("                                      contextual   static (word-embedding table, as Word2Vec)")
    for (i, j) in [(0, 1), (0, 2), (1, 2)]:
        kind = "same sense     " if i else "different sense"
        print(f"{kind}  {names[i]:<7} vs {names[j]:<7}: cosine {matrix.matrix[i, j]:.3f}        "
              f"{matrix.static[i, j]:.3f}")
    same, different = matrix.matrix[1, 2], max(matrix.matrix[0, 1], matrix.matrix[0, 2])
    verdict = "higher" if same > different else "NOT higher (unexpected)"
    print(f"same sense is {verdict} than different sense; a static vector cannot tell them apart (1.000 for every")
    print("pair): that is how contextual embeddings differ from earlier ones. 'bank' is found by whole-word match (case and")
    print("accents normalised), pooled over its word pieces, at a chosen occurrence — not tokens.index('bank').")
    multi = model.word_embedding("The embeddings were surprisingly good.", "embeddings")
    print(f"a word split into pieces: 'embeddings' -> {multi.tokens} (mean of {len(multi.tokens)} piece vectors)")
    from bertkit.train.plots import plot_similarity_matrix

    path = plot_similarity_matrix(matrix.matrix, matrix.labels, out / "bank_similarity.png", title="'bank' in context")
    print(f"heatmap of 'bank' across the three sentences: {path}")


def show_sentence_similarity(model: bertkit.Model, out: Path) -> None:
    section("3. Sentence embeddings and a similarity matrix")
    vectors = model.embed(SENTENCES)  # mean pooling + L2 norm, as the checkpoint's sentence-transformers config says
    sims = vectors @ vectors.T
    for i, s in enumerate(SENTENCES):
        j = int(np.argsort(-sims[i])[1])
        print(f"{s[:42]:<42} nearest: {SENTENCES[j][:40]:<40} ({sims[i, j]:.2f})")
    from bertkit.train.plots import plot_similarity_matrix

    path = plot_similarity_matrix(sims, SENTENCES, out / "sentence_similarity.png", title="sentence cosine similarity")
    print(f"{vectors.shape[0]} vectors of dimension {vectors.shape[1]}; heatmap: {path}")


def show_fill_mask(model: bertkit.Model) -> None:
    section("4. Fill-mask")
    text = "The capital of France is [MASK]."
    if model.network.mlm_head is None:
        print(f"{model.source} has no masked-LM head (all-MiniLM-L6-v2 was trained for sentence embeddings),")
        print("so it cannot predict masked words. With a checkpoint that has one, e.g. bert-base-uncased:")
        print(f'  bertkit fill-mask "{text}" --model /path/to/bert-base-uncased   (or the hub id, when online)')
        return
    for row in model.fill_mask([text], top_k=5)[0][0]:
        print(f"  {row['token']:<12} {row['score']:.3f}")


def show_finetuning(model_name: str, device: str | None, out: Path, limit: int, epochs: int) -> None:
    section("5. Fine-tuning a sentiment classifier on rotten_tomatoes (stratified, seeded split)")
    from bertkit.train import demo_finetune

    print(f"training on a stratified {limit}-review subset for {epochs} epoch(s); the split is checked for")
    print("single-class sets, missing classes, label-sorted order and train/test duplicates before training.")
    result = demo_finetune(model_name, output_dir=out / "sentiment-model", limit=limit, epochs=epochs, device=device)
    m = result["metrics"]
    print(f"trained on {result['train_examples']} reviews, evaluated on {result['eval_examples']} held-out ones:")
    print(f"accuracy {m['accuracy']:.3f}   macro-F1 {m['macro_f1']:.3f}   loss {m['loss']:.3f}   "
          f"({result['timings']['total_s']:.0f} s)")
    for name, row in m.get("per_class", {}).items():
        print(f"  {name:<8} precision {row['precision']:.3f}  recall {row['recall']:.3f}  support {row['support']}")
    starved = [name for name, row in m.get("per_class", {}).items() if row["recall"] < 0.2]
    if starved:
        print(f"WARNING: the model almost never predicts {', '.join(starved)}: it has not learned the task yet "
              f"(train longer: --epochs, --train-limit)")
    section("6. Inference with the fine-tuned model")
    for row in result["predictions"]:
        scores = ", ".join(f"{k} {v:.2f}" for k, v in row["scores"].items())
        print(f"{row['label']:<7} ({scores})  {row['text']}")
    print(f"model, metrics.json, training record and plots: {result['output_dir']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bertkit demo", description=__doc__)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--device", default=None)
    parser.add_argument("--output-dir", default="demo_output", help="where plots and the fine-tuned model go")
    parser.add_argument("--train-limit", type=int, default=2000, help="training examples for the fine-tuning section")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args(argv)
    from bertkit.cli import one_line_warning

    warnings.showwarning = one_line_warning  # data-check warnings read as the CLI prints them
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        model = bertkit.load(args.model, device=args.device)
        print(f"loaded {model!r}")
        show_tokenization(model)
        show_word_in_context(model, out)
        show_sentence_similarity(model, out)
        show_fill_mask(model)
        if not args.skip_training:
            show_finetuning(args.model, args.device, out, args.train_limit, args.epochs)
    except bertkit.BertkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"\ndone in {time.perf_counter() - start:.0f} s; outputs in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
