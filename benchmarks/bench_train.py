"""Fine-tuning side by side: bertkit's Trainer vs transformers' Trainer, same model, split, seed and hyper-parameters.

    python benchmarks/bench_train.py --limit 2000 --epochs 1            # ~10-15 min on 2 CPU cores
    python benchmarks/bench_train.py --limit 0 --epochs 1 --device cuda  # the whole dataset
    python benchmarks/bench_train.py --quick --json out.json             # a smoke run in seconds (not a measurement)
    python benchmarks/bench_train.py --parity 25                         # same init and batches, N steps, exact (~2 min)

Both start from the same folder (our classifier head vs BertForSequenceClassification's, each
initialised from the same seed), train on the same stratified subset of the same seeded split, with
lr, batch size, warm-up, weight decay, clipping and max length equal, and evaluate on the same
held-out rows once per epoch. transformers pads each random batch (DataCollatorWithPadding); bertkit
packs its batches unpadded (random ones by default; `--bucket-size 64` sorts them by length). Printed: accuracy of each, training wall time of each, and the ratio.

`--parity N` compares the two trainers' arithmetic instead of their accuracy: both start from the
same weights (our new head copied into transformers'), with dropout off, and take N steps on the
same batches (ours, in our order), transformers through its own Trainer's optimizer, schedule,
training_step and clipping. Printed: the no-decay parameter sets, the optimizer settings, the
learning rate, loss and gradient norm of each step, and how far the weights differ after N steps;
then how our length-bucketed batches differ from random ones in their label mix.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


from bertkit.train.config import TrainConfig  # noqa: E402

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
    p.add_argument("--bucket-size", type=int, default=TrainConfig().bucket_size,
                   help="bertkit: batches' worth of examples sorted by length together; 0 = random batches as "
                        "transformers (default: TrainConfig's)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: best available)")
    p.add_argument("--only", choices=["bertkit", "transformers"], default=None, help="run one side only")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--parity", type=int, default=0, metavar="N",
                   help="instead of training: N steps of both trainers from the same weights on the same batches, "
                        "dropout off, compared step by step")
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


def run_parity(args, train) -> dict:
    """N steps of both trainers from the same weights, on the same batches, with dropout off: how far apart they end."""
    import shutil

    import torch
    import transformers
    from transformers import (AutoTokenizer, BertForSequenceClassification, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    import bertkit
    from bertkit.checkpoint import resolve, to_hf_names
    from bertkit.classification import SINGLE_LABEL
    from bertkit.train import (BatchStream, encode_dataset, linear_warmup_decay, make_optimizer, param_groups,
                               seed_everything, train_step, warmup_steps_for)
    from bertkit.train.config import TrainConfig
    from bertkit.train.trainer import planned_steps

    transformers.logging.set_verbosity_error()
    names = train.label_names
    with tempfile.TemporaryDirectory() as tmp:
        # The model without dropout, so both sides compute the same function: what is left is arithmetic.
        folder = Path(tmp) / "model"
        shutil.copytree(resolve(args.model), folder)
        config = json.loads((folder / "config.json").read_text())
        config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        (folder / "config.json").write_text(json.dumps(config))

        ours = bertkit.load(folder, device="cpu")
        seed_everything(args.seed)
        ours.network.add_classifier(dict(enumerate(names)), problem_type=SINGLE_LABEL)
        hf = BertForSequenceClassification.from_pretrained(folder, num_labels=len(names), id2label=dict(enumerate(names)))
        missing = hf.load_state_dict(to_hf_names(ours.network), strict=False)
        assert not missing.unexpected_keys, missing.unexpected_keys
        tokenizer = AutoTokenizer.from_pretrained(folder)
        enc = tokenizer(train.texts, truncation=True, max_length=args.max_length)
        features = [{"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i],
                     "attention_mask": enc["attention_mask"][i], "labels": train.labels[i]} for i in range(len(train))]
        hf_args = TrainingArguments(
            output_dir=str(Path(tmp) / "hf"), num_train_epochs=args.epochs, learning_rate=args.lr,
            per_device_train_batch_size=args.batch_size, warmup_steps=args.warmup_ratio,
            weight_decay=args.weight_decay, max_grad_norm=1.0, seed=args.seed, use_cpu=True, report_to="none",
            save_strategy="no", disable_tqdm=True)
        trainer = Trainer(model=hf, args=hf_args, train_dataset=features, data_collator=DataCollatorWithPadding(tokenizer))
        hf_total = len(trainer.get_train_dataloader()) * args.epochs
        trainer.current_gradient_accumulation_steps = 1  # what its loop sets before each step (no accumulation here)
        trainer.create_optimizer_and_scheduler(num_training_steps=hf_total)

        config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_length=args.max_length,
                             warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, seed=args.seed,
                             bucket_size=args.bucket_size)
        stream = BatchStream(encode_dataset(ours, train, args.max_length), train.labels, batch_size=args.batch_size,
                             generator=seed_everything(args.seed), bucket_size=args.bucket_size)
        total = planned_steps(config, stream)
        optimizer = make_optimizer(ours.network, args.lr, args.weight_decay)
        scheduler = linear_warmup_decay(optimizer, warmup_steps_for(total, args.warmup_ratio), total)

        hf_params = {n for n, _ in hf.named_parameters()}
        exempt = no_decay_names(ours.network) & hf_params  # (buffers have no decay to compare)
        exempt_hf = hf_params - set(trainer.get_decay_parameter_names(hf))
        hf_opt = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
        settings = lambda o: {k: o.defaults.get(k) for k in ("betas", "eps", "fused", "amsgrad", "maximize")}  # noqa: E731
        out = {"steps_planned": {"bertkit": total, "transformers": hf_total},
               "no_decay_equal": exempt == exempt_hf, "no_decay": sorted(exempt),
               "optimizer": {"bertkit": settings(optimizer), "transformers": settings(hf_opt)},
               "steps": []}
        out["lr_schedule_max_diff"] = max(abs(a - b) for a, b in zip(*schedules(trainer, args.lr, total, hf_total)))
        start = {n: t.clone() for n, t in hf.state_dict().items()}
        ours.network.train()
        hf.train()
        for k, group in enumerate(stream.plan(0)[: args.parity], 1):
            lrs = (optimizer.param_groups[0]["lr"], hf_opt.param_groups[0]["lr"])
            loss, norm = train_step(ours.network, [stream.batch(group)], optimizer, scheduler, max_grad_norm=1.0)
            hf_loss = trainer.training_step(hf, trainer.data_collator([features[i] for i in group]))
            hf_norm = trainer._clip_grad_norm(hf)
            hf_opt.step()
            trainer.lr_scheduler.step()
            hf.zero_grad()
            out["steps"].append({"lr": lrs, "loss": (float(loss) / len(group), float(hf_loss)),
                                 "grad_norm": (float(norm), float(hf_norm))})
            print(f"step {k}: {out['steps'][-1]}", file=sys.stderr, flush=True)
        theirs = hf.state_dict()
        diffs = {n: float((t - theirs[n]).abs().max()) for n, t in to_hf_names(ours.network).items()}
        moved = {n: float((theirs[n] - start[n]).abs().max()) for n in diffs}
        worst = max(diffs, key=diffs.get)
        out["weights"] = {"max_abs_diff": diffs[worst], "where": worst,
                          "largest_update": max(moved.values()), "median_update": sorted(moved.values())[len(moved) // 2]}
    out["batches"] = label_mix(stream, train, args)
    return out


def no_decay_names(network) -> set[str]:
    """Our parameters that AdamW does not decay, under transformers' names (marked 1 in a copy, then renamed)."""
    import copy

    import torch

    from bertkit.checkpoint import to_hf_names
    from bertkit.train import param_groups

    marked = copy.deepcopy(network)
    exempt = {id(p) for p in param_groups(marked)[1]["params"]}
    with torch.no_grad():
        for p in marked.parameters():
            p.fill_(1.0 if id(p) in exempt else 0.0)
    return {n for n, t in to_hf_names(marked).items() if bool((t == 1).all())}


def schedules(trainer, lr: float, ours_total: int, hf_total: int) -> tuple[list[float], list[float]]:
    """Every step's learning rate of a whole run: ours, and the one transformers' Trainer makes (create_scheduler)."""
    import torch

    from bertkit.train import linear_warmup_decay, warmup_steps_for

    def walk(make, total) -> list[float]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
        sched = make(opt, total)
        out = []
        for _ in range(total):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    def hf_schedule(opt, n):
        kept, trainer.lr_scheduler = trainer.lr_scheduler, None  # it makes one only when it has none
        try:
            return trainer.create_scheduler(num_training_steps=n, optimizer=opt)
        finally:
            trainer.lr_scheduler = kept

    theirs = walk(hf_schedule, hf_total)
    ours = walk(lambda opt, n: linear_warmup_decay(opt, warmup_steps_for(n, trainer.args.warmup_steps), n), ours_total)
    return ours, theirs


def label_mix(stream, train, args) -> dict:
    """How far each batch's share of the first label strays from the data's, for our plan and for random batches."""
    import random

    from bertkit.batching import group_by_budget

    labels = [int(y) for y in train.labels]
    share = sum(1 for y in labels if y == 0) / len(labels)

    def spread(plan) -> float:
        return sum(abs(sum(1 for i in b if labels[i] == 0) / len(b) - share) for b in plan) / len(plan)

    by_label = {name: [stream.lengths[i] for i, y in enumerate(labels) if y == k] for k, name in enumerate(train.label_names)}
    randoms = [spread(group_by_budget(stream.lengths, stream.max_tokens, args.batch_size, shuffle=True,
                                      seed=random.Random(s).getrandbits(63), bucket_size=0)) for s in range(5)]
    return {"mean_tokens_by_label": {k: sum(v) / len(v) for k, v in by_label.items()},
            "mean_label_share_deviation": {"bertkit_plan": sum(spread(stream.plan(e)) for e in range(3)) / 3,
                                           "random_batches": sum(randoms) / len(randoms)}}


def print_parity(r: dict) -> None:
    print(f"steps planned: bertkit {r['steps_planned']['bertkit']}, transformers {r['steps_planned']['transformers']}")
    print(f"no-decay parameters equal to transformers' Trainer: {r['no_decay_equal']} ({len(r['no_decay'])} tensors)")
    print(f"optimizer: bertkit {r['optimizer']['bertkit']}  transformers {r['optimizer']['transformers']}")
    print(f"learning rate of every step of the run: largest difference {r['lr_schedule_max_diff']:.3g}")
    print(f"{'step':>4}  {'lr ours':>10} {'lr theirs':>10}  {'loss ours':>10} {'loss theirs':>11}  "
          f"{'|g| ours':>9} {'|g| theirs':>10}")
    for k, s in enumerate(r["steps"], 1):
        print(f"{k:>4}  {s['lr'][0]:>10.3e} {s['lr'][1]:>10.3e}  {s['loss'][0]:>10.6f} {s['loss'][1]:>11.6f}  "
              f"{s['grad_norm'][0]:>9.5f} {s['grad_norm'][1]:>10.5f}")
    w = r["weights"]
    print(f"after {len(r['steps'])} steps: weights differ by at most {w['max_abs_diff']:.3g} ({w['where']}); "
          f"the largest update is {w['largest_update']:.3g}, the median tensor's {w['median_update']:.3g}")
    b = r["batches"]
    print(f"mean tokens by label: {b['mean_tokens_by_label']}; mean deviation of a batch's label share from the "
          f"data's: bertkit plan {b['mean_label_share_deviation']['bertkit_plan']:.4f}, random batches "
          f"{b['mean_label_share_deviation']['random_batches']:.4f}")


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from bertkit.device import pick_device

    device = pick_device(args.device)
    train, evaluation = load_splits(args)
    if args.parity:
        result = run_parity(args, train)
        print_parity(result)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), **result}, f, indent=2)
        return 0
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
