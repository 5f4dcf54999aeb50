"""Masked-LM training measured: domain adaptation of the bundled MiniLM, what it learns, and its speed against transformers.

    python benchmarks/bench_pretrain.py --quick --out bench_pretrain/       # about an hour on 2 busy CPU cores (measured once): 1 seed
    python benchmarks/bench_pretrain.py --out bench_pretrain/ --seeds 42 43 44 --steps 1000

Three measurements, each on the same text and model:

* learn: the bundled MiniLM (no MLM head: it gets a new one) trained `--steps` steps on the unlabelled
  rotten-tomatoes reviews and 2016 debate statements (benchmarks/pretrain_text.py), the rotten_tomatoes
  evaluation split of the demo EXCLUDED from that text; held-out masked loss, perplexity, top-1 and top-5
  against the unigram baseline on the same masked tokens, and fill-mask on a few sentences before (the
  new, untrained head) and after.
* adapt: the demo's fine-tuning (bertkit.train.recipes.demo_finetune: 2,000 stratified reviews, 2 epochs)
  from the plain MiniLM and from the MiniLM adapted above, for each seed; accuracy and macro-F1 on the
  demo's 1,000 held-out reviews.
* speed: training tokens per second, ours (packed, unpadded, the loss on masked rows only) against
  transformers' Trainer with DataCollatorForLanguageModeling(whole_word_mask=True) (transformers 5's
  whole-word collator) on the same texts grouped into full blocks of --max-length tokens as run_mlm.py
  does, the same starting weights, batch size and step count, in this process.

Everything is written to --out (corpora, runs, results.json) and printed as one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pretrain_text  # noqa: E402

FILL_MASK_SENTENCES = (
    "this movie was [MASK] and i loved every minute of it.",
    "the acting was terrible and the plot made no [MASK].",
    "we need to create more [MASK] in this country.",
    "the president of the united [MASK] spoke tonight.",
)
CORPORA = ("rotten_tomatoes", "debates")


def demo_eval_texts() -> list[str]:
    """The rotten_tomatoes reviews the demo evaluates on (its stratified split), kept out of the pre-training text."""
    from bertkit.data import load_dataset, stratified_split

    _, held_out = stratified_split(load_dataset("rotten_tomatoes"), test_size=0.1, seed=42)
    return list(held_out.texts)


def build_text(out: Path) -> dict:
    exclude = {"rotten_tomatoes": demo_eval_texts()}
    return pretrain_text.build(out / "text", CORPORA, exclude=exclude)


def fill_masks(model, sentences=FILL_MASK_SENTENCES) -> list[dict]:
    """The five best guesses for each sentence's one [MASK]."""
    rows = model.fill_mask(list(sentences), top_k=5)  # per text, per mask, ranked {token, id, score}
    return [{"text": text, "top5": [c["token"] for c in row[0]]} for text, row in zip(sentences, rows)]


def learn(out: Path, steps: int, max_length: int, batch_size: int, lr: float, seed: int) -> dict:
    import bertkit
    from bertkit.pretrain import ensure_mlm_head
    from bertkit.pretrain.recipe import pretrain_mlm

    before = bertkit.load("minilm", device="cpu")
    bertkit.train.seed_everything(seed)  # the same new head the run starts from
    ensure_mlm_head(before.network)
    start = out / "minilm-new-head"
    before.save(start)  # the starting point for the speed comparison too
    filled_before = fill_masks(before)
    run = out / "runs" / f"minilm-adapted-s{seed}"
    t = time.perf_counter()
    result = pretrain_mlm("minilm", out / "text", output_dir=run, overwrite=True, max_steps=steps,
                          batch_size=batch_size, max_length=max_length, lr=lr, warmup_ratio=0.06, seed=seed,
                          eval_fraction=0.02, eval_every=max(1, steps // 4), progress=False, device="cpu")
    wall = time.perf_counter() - t
    after = bertkit.load(run, device="cpu")
    evals = [{k: r[k] for k in ("step", "loss", "perplexity", "top1", "top5")}
             for r in result.history if r["split"] == "eval"]
    return {"run": str(run), "steps": result.steps, "wall_s": round(wall, 1), "timings": result.timings,
            "data": result.record.get("data"), "final": result.metrics, "evaluations": evals,
            "fill_mask": [{"text": b["text"], "before": b["top5"], "after": a["top5"]}
                          for b, a in zip(filled_before, fill_masks(after))]}


def adapt(adapted: Path, seeds: list[int], out: Path) -> dict:
    from bertkit.train.recipes import demo_finetune

    rows = []
    for seed in seeds:
        for name, model in (("minilm", "minilm"), ("minilm+mlm", str(adapted))):
            r = demo_finetune(model, output_dir=out / "runs" / f"finetune-{name}-s{seed}", seed=seed, progress=False,
                              device="cpu")
            rows.append({"model": name, "seed": seed, "accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
                         "train_s": r["timings"]["train_s"]})
            print(json.dumps(rows[-1]), file=sys.stderr)
    summary = {}
    for name in ("minilm", "minilm+mlm"):
        acc = [r["accuracy"] for r in rows if r["model"] == name]
        summary[name] = {"mean_accuracy": sum(acc) / len(acc), "seeds": len(acc)}
    return {"rows": rows, "summary": summary}


def speed(start: Path, text: Path, steps: int, max_length: int, batch_size: int, seed: int) -> dict:
    """Tokens per second of `steps` training steps on the same texts: ours, then transformers' Trainer."""
    import torch
    from bertkit.pretrain.recipe import pretrain_mlm

    ours = pretrain_mlm(str(start), text, max_steps=steps, batch_size=batch_size, max_length=max_length, lr=1e-4,
                        seed=seed, eval_fraction=0, progress=False, device="cpu")
    ours_row = {"tokens_per_s": ours.timings["tokens_per_s"], "train_s": ours.timings["train_s"],
                "tokens": round(ours.timings["tokens_per_s"] * ours.timings["train_s"])}
    theirs_row = _transformers_speed(start, text, steps, max_length, batch_size, seed)
    return {"steps": steps, "batch_size": batch_size, "max_length": max_length, "threads": torch.get_num_threads(),
            "bertkit": ours_row, "transformers": theirs_row,
            "ratio": round(ours_row["tokens_per_s"] / theirs_row["tokens_per_s"], 2)}


def _transformers_speed(start: Path, text: Path, steps: int, max_length: int, batch_size: int, seed: int) -> dict:
    """run_mlm.py's recipe: tokenize every document, concatenate, cut into blocks of max_length, whole-word masking."""
    import torch
    from transformers import (AutoTokenizer, BertForMaskedLM, DataCollatorForLanguageModeling, Trainer,
                              TrainingArguments)

    from bertkit.pretrain import read_documents

    tokenizer = AutoTokenizer.from_pretrained(start)
    needed = steps * batch_size * max_length  # enough text for the steps, read in file order
    ids, offsets, specials = [], [], []
    for doc in read_documents(text):
        enc = tokenizer(doc, return_offsets_mapping=True, return_special_tokens_mask=True)
        ids += enc["input_ids"]
        offsets += enc["offset_mapping"]
        specials += enc["special_tokens_mask"]
        if len(ids) >= needed:
            break
    blocks = [{"input_ids": ids[i:i + max_length], "offset_mapping": offsets[i:i + max_length],
               "special_tokens_mask": specials[i:i + max_length]}
              for i in range(0, len(ids) - max_length + 1, max_length)]
    model = BertForMaskedLM.from_pretrained(start)
    collator = DataCollatorForLanguageModeling(tokenizer, whole_word_mask=True, mlm_probability=0.15, seed=seed)
    args = TrainingArguments(output_dir=str(start.parent / "hf-trainer"), max_steps=steps,
                             per_device_train_batch_size=batch_size, learning_rate=1e-4, report_to=[], use_cpu=True,
                             save_strategy="no", logging_strategy="no", seed=seed, dataloader_num_workers=0,
                             disable_tqdm=True,
                             # keep offset_mapping and special_tokens_mask for the whole-word collator: the Trainer
                             # drops inputs its model does not take before the collator sees them
                             remove_unused_columns=False)
    trainer = Trainer(model=model, args=args, train_dataset=blocks, data_collator=collator)
    t = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t
    tokens = steps * batch_size * max_length  # every block is full: no padding
    return {"tokens_per_s": round(tokens / seconds, 1), "train_s": round(seconds, 3), "tokens": tokens,
            "torch_threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("bench_pretrain"))
    p.add_argument("--quick", action="store_true", help="1 seed, 60 steps of 8 windows at lr 3e-4, 10 speed steps (about an hour on 2 busy CPU cores)")
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    p.add_argument("--steps", type=int, default=1000, help="masked-LM training steps for 'learn' and 'adapt'")
    p.add_argument("--speed-steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--only", nargs="+", choices=("learn", "adapt", "speed"), default=("learn", "adapt", "speed"))
    args = p.parse_args(argv)
    if args.quick:  # took about an hour on two busy CPU cores (MiniLM training ran at 110-180 tokens/s there)
        args.seeds, args.steps, args.speed_steps, args.batch_size, args.lr = args.seeds[:1], 60, 10, 8, 3e-4
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"command": " ".join(["python", "benchmarks/bench_pretrain.py", *(argv or sys.argv[1:])]),
                    "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    t = time.perf_counter()
    report["text"] = build_text(args.out)
    seed = args.seeds[0]
    if "learn" in args.only or "adapt" in args.only:
        report["learn"] = learn(args.out, args.steps, args.max_length, args.batch_size, args.lr, seed)
        print(json.dumps({k: report["learn"][k] for k in ("final", "fill_mask")}, indent=1), file=sys.stderr)
    if "adapt" in args.only:
        report["adapt"] = adapt(Path(report["learn"]["run"]), args.seeds, args.out)
    if "speed" in args.only:
        start = args.out / "minilm-new-head"
        if not start.exists():
            import bertkit
            from bertkit.pretrain import ensure_mlm_head

            model = bertkit.load("minilm", device="cpu")
            ensure_mlm_head(model.network)
            model.save(start)
        report["speed"] = speed(start, args.out / "text", args.speed_steps, args.max_length, args.batch_size, seed)
    report["total_s"] = round(time.perf_counter() - t, 1)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
