"""Fine-tuning side by side: bertkit's Trainer vs transformers' Trainer, same model, split, seed and hyper-parameters.

    python benchmarks/bench_train.py --limit 2000 --epochs 1            # ~10-15 min on 2 CPU cores
    python benchmarks/bench_train.py --limit 0 --epochs 1 --device cuda  # the whole dataset
    python benchmarks/bench_train.py --quick --json out.json             # a smoke run in seconds (not a measurement)

Both start from the same folder (our classifier head vs BertForSequenceClassification's, each
initialised from the same seed), train on the same stratified subset of the same seeded split, with
lr, batch size, warm-up, weight decay, clipping and max length equal, and evaluate on the same
held-out rows once per epoch. transformers pads each random batch (DataCollatorWithPadding); bertkit
packs length-bucketed batches. Printed: accuracy of each, training wall time of each, and the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


QUICK = {"limit": 32, "eval_limit": 32, "epochs": 1}  # --quick: every path and every output key, in seconds


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm")
    p.add_argument("--data", default="rotten_tomatoes")
    p.add_argument("--limit", type=int, default=2000, help="training examples (stratified subset); 0 = the whole split")
    p.add_argument("--eval-limit", type=int, default=0, help="evaluation examples; 0 = the whole held-out split")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--test-size", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42, help="seed of the split and the subset")
    p.add_argument("--train-seeds", default=None,
                   help="comma-separated training seeds (head init, order, dropout); several give a mean, since "
                        "a short run's accuracy swings by points from seed to seed (default: --seed)")
    p.add_argument("--bucket-size", type=int, default=64,
                   help="bertkit: batches' worth of examples sorted by length together; 0 = random batches as transformers")
    p.add_argument("--device", default=None, help="cpu or cuda (default: best available)")
    p.add_argument("--only", choices=["bertkit", "transformers"], default=None, help="run one side only")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run: {QUICK['limit']} training and {QUICK['eval_limit']} evaluation examples, "
                        f"{QUICK['epochs']} epoch (overrides --limit, --eval-limit and --epochs)")
    args = p.parse_args(argv)
    if args.quick:
        args.limit, args.eval_limit, args.epochs = QUICK["limit"], QUICK["eval_limit"], QUICK["epochs"]
    return args


def load_splits(args):
    from bertkit.data import load_dataset, stratified_split
    from bertkit.train import stratified_subset

    full = load_dataset(args.data)
    train, evaluation = stratified_split(full, test_size=args.test_size, seed=args.seed)
    if args.limit:
        train = stratified_subset(train, args.limit, seed=args.seed)
    if args.eval_limit:
        evaluation = stratified_subset(evaluation, args.eval_limit, seed=args.seed)
    return train, evaluation


def run_bertkit(args, train, evaluation, device) -> dict:
    import bertkit
    from bertkit.train import TrainConfig, Trainer

    model = bertkit.load(args.model, device=device)
    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_length=args.max_length,
                         warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, max_grad_norm=1.0,
                         seed=args.seed, metric="accuracy", log_every=25,
                         bucket_size=args.bucket_size)
    t = time.perf_counter()
    result = Trainer(model, train, evaluation, config, progress=False).fit()
    wall = time.perf_counter() - t
    last_eval = [r for r in result.history if r["split"] == "eval"][-1]
    return {"accuracy": last_eval["accuracy"], "macro_f1": last_eval["macro_f1"], "eval_loss": last_eval["loss"],
            "wall_s": wall, "train_s": result.timings["train_s"], "eval_s": result.timings["eval_s"], "steps": result.steps}


def run_transformers(args, train, evaluation, device) -> dict:
    import numpy as np
    import torch
    import transformers
    from transformers import (AutoTokenizer, BertForSequenceClassification, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    from bertkit.checkpoint import resolve
    from bertkit.train.metrics import classification_report

    transformers.logging.set_verbosity_error()
    folder = resolve(args.model)
    names = train.label_names
    transformers.set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = BertForSequenceClassification.from_pretrained(
        folder, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    t = time.perf_counter()  # like bertkit's clock: from a loaded model, through tokenizing, training and evaluating

    def features(ds):
        enc = tokenizer(ds.texts, truncation=True, max_length=args.max_length)
        return [{"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i],
                 "attention_mask": enc["attention_mask"][i], "labels": ds.labels[i]} for i in range(len(ds))]

    def compute_metrics(pred):
        return {"accuracy": classification_report(pred.label_ids, pred.predictions, names)["accuracy"]}

    with tempfile.TemporaryDirectory() as tmp:
        training_args = TrainingArguments(
            output_dir=tmp, num_train_epochs=args.epochs, learning_rate=args.lr,
            per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64,
            warmup_steps=args.warmup_ratio,  # a float below 1 is a ratio of the steps (transformers 5)
            weight_decay=args.weight_decay, max_grad_norm=1.0, seed=args.seed, data_seed=args.seed,
            eval_strategy="epoch", save_strategy="no", logging_steps=25, report_to="none",
            use_cpu=device.type != "cuda", bf16=device.type == "cuda", dataloader_num_workers=0, disable_tqdm=True)
        trainer = Trainer(model=model, args=training_args, train_dataset=features(train), eval_dataset=features(evaluation),
                          data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics)
        trainer.train()
        wall = time.perf_counter() - t
        evals = [r for r in trainer.state.log_history if "eval_accuracy" in r]
    return {"accuracy": evals[-1]["eval_accuracy"], "eval_loss": evals[-1]["eval_loss"], "wall_s": wall,
            "eval_s": sum(r.get("eval_runtime", 0.0) for r in evals), "steps": trainer.state.global_step,
            "optimizer": type(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer).__name__,
            "torch_threads": torch.get_num_threads(), "transformers": transformers.__version__,
            "numpy": np.__version__}


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from bertkit.device import pick_device

    device = pick_device(args.device)
    train, evaluation = load_splits(args)
    seeds = [int(s) for s in args.train_seeds.split(",")] if args.train_seeds else [args.seed]
    print(f"{args.data}: {len(train)} training and {len(evaluation)} evaluation examples, {args.epochs} epoch(s), "
          f"lr {args.lr}, batch {args.batch_size}, max length {args.max_length}, warm-up {args.warmup_ratio}, "
          f"split seed {args.seed}, training seed(s) {seeds}, device {device} ({torch.get_num_threads()} threads)", flush=True)
    sides = [s for s in ("transformers", "bertkit") if args.only in (None, s)]
    runs: dict[str, list[dict]] = {s: [] for s in sides}
    for seed in seeds:
        run_args = argparse.Namespace(**{**vars(args), "seed": seed})
        for side in sides:  # alternate the two, so a change in machine load hits both alike
            r = (run_transformers if side == "transformers" else run_bertkit)(run_args, train, evaluation, device)
            runs[side].append({"seed": seed, **r})
            print(f"seed {seed:>4}  {side + ' Trainer:':<22} accuracy {r['accuracy']:.4f}  eval loss {r['eval_loss']:.4f}  "
                  f"wall {r['wall_s']:.1f}s  ({r['steps']} steps)", flush=True)
    summary = {s: {"accuracy": sum(r["accuracy"] for r in rs) / len(rs), "eval_loss": sum(r["eval_loss"] for r in rs) / len(rs),
                   "wall_s": sum(r["wall_s"] for r in rs)} for s, rs in runs.items()}
    results = {"runs": runs, "mean": summary}
    if len(summary) == 2:
        ours, theirs = summary["bertkit"], summary["transformers"]
        results["accuracy_diff_points"] = 100 * (ours["accuracy"] - theirs["accuracy"])
        results["time_ratio"] = theirs["wall_s"] / ours["wall_s"]
        what = "mean accuracy" if len(seeds) > 1 else "accuracy"
        print(f"{what}: bertkit {ours['accuracy']:.4f} vs transformers {theirs['accuracy']:.4f} "
              f"({results['accuracy_diff_points']:+.2f} points); eval loss {ours['eval_loss']:.4f} vs {theirs['eval_loss']:.4f}")
        print(f"wall time (tokenize + train + per-epoch eval): bertkit {ours['wall_s']:.1f}s vs transformers "
              f"{theirs['wall_s']:.1f}s -> bertkit is {results['time_ratio']:.2f}x faster")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), **results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
