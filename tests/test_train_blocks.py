"""Training blocks: parameter groups, optimizer, schedule, clipping, seeding, batch plans, loss, accumulation, RNG state, checkpoints."""
from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bertkit
from bertkit.data import TextDataset
from bertkit.errors import BertkitError
from bertkit.train import (BatchStream, balanced_class_weights, classification_loss, clip_gradients, encode_dataset,
                           latest_checkpoint, linear_warmup_decay, load_training_state, make_optimizer, param_groups,
                           rng_state, save_checkpoint, seed_everything, set_rng_state, stratified_subset, train_step,
                           warmup_steps_for)
from helpers import EPS32, TINY_TERMS, fp32_tol, random_sequences

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def tiny(tiny_base_dir):
    model = bertkit.load(tiny_base_dir, device="cpu")
    seed_everything(0)
    model.network.add_classifier({0: "neg", 1: "pos"})
    return model


class FakeEncoding:
    def __init__(self, ids):
        self.ids = ids
        self.type_ids = [0] * len(ids)

    def __len__(self):
        return len(self.ids)


def fake_encodings(lengths, seed=0):
    ids, _ = random_sequences(lengths, seed=seed)
    return [FakeEncoding(s) for s in ids]


# -- optimisation ---------------------------------------------------------------------------------
def test_param_groups_exempt_biases_and_layernorm(tiny):
    decay, no_decay = param_groups(tiny.network, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in tiny.network.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    exempt = {names[id(p)] for p in no_decay["params"]}
    assert decayed | exempt == set(names.values()) and not decayed & exempt
    assert all(n.endswith("bias") or "norm" in n for n in exempt)
    assert "encoder.embeddings.norm.weight" in exempt and "encoder.layers.0.ffn_norm.weight" in exempt
    assert "encoder.layers.0.attention.qkv.weight" in decayed and "classifier.linear.weight" in decayed
    assert not any(n.endswith("bias") for n in decayed)


def test_the_no_decay_set_is_transformers_trainers(tiny_cls_dir, tmp_path):
    """Biases and LayerNorm parameters, exactly the tensors transformers' Trainer exempts (get_decay_parameter_names)."""
    import copy

    from transformers import BertForSequenceClassification, Trainer, TrainingArguments

    from bertkit.checkpoint import to_hf_names

    ours = bertkit.load(tiny_cls_dir, device="cpu").network
    hf = BertForSequenceClassification.from_pretrained(tiny_cls_dir)
    trainer = Trainer(model=hf, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"))
    params = {n for n, _ in hf.named_parameters()}
    theirs = params - set(trainer.get_decay_parameter_names(hf))
    marked = copy.deepcopy(ours)  # 1 where we do not decay, 0 where we do; renamed to transformers' names
    exempt = {id(p) for p in param_groups(marked)[1]["params"]}
    with torch.no_grad():
        for p in marked.parameters():
            p.fill_(float(id(p) in exempt))
    mine = {n for n, t in to_hf_names(marked).items() if n in params and bool((t == 1).all())}
    assert mine == theirs and len(theirs) > 10


def test_optimizer_and_schedule_are_transformers_trainers_defaults():
    """AdamW's betas and eps, and every step's learning rate for a warm-up ratio (the first step at lr 0), as
    transformers' Trainer makes them from the same TrainingArguments (get_optimizer_cls_and_kwargs, create_scheduler)."""
    from transformers import Trainer, TrainingArguments, get_scheduler

    args = TrainingArguments(output_dir="unused", learning_rate=5e-5, warmup_steps=0.1, weight_decay=0.01,
                             use_cpu=True, report_to="none")
    _, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    ours = make_optimizer(torch.nn.Linear(2, 2), lr=args.learning_rate, weight_decay=args.weight_decay)
    assert ours.defaults["betas"] == kwargs["betas"] and ours.defaults["eps"] == kwargs["eps"]
    assert ours.defaults["fused"] == kwargs.get("fused", False)

    def lrs(make, total):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=args.learning_rate)
        sched, out = make(opt, total), []
        for _ in range(total):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    for total in (7, 63, 189):
        theirs = lrs(lambda o, n: get_scheduler(args.lr_scheduler_type, o, num_warmup_steps=args.get_warmup_steps(n),
                                                num_training_steps=n), total)
        mine = lrs(lambda o, n: linear_warmup_decay(o, warmup_steps_for(n, 0.1), n), total)
        assert mine == theirs and mine[0] == 0.0  # the same float64 arithmetic, so equal to the bit


def test_make_optimizer_is_fused_adamw_with_two_groups(tiny):
    opt = make_optimizer(tiny.network, lr=3e-5, weight_decay=0.01)
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert all(g["lr"] == 3e-5 for g in opt.param_groups)
    assert opt.defaults["fused"] is True  # torch has a fused CPU AdamW; it is several times faster
    assert make_optimizer(tiny.network, fused=False).defaults["fused"] in (None, False)


def test_schedule_warms_up_then_decays_like_transformers():
    from transformers import get_linear_schedule_with_warmup

    def lrs(make):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=1.0)
        sched = make(opt)
        out = []
        for _ in range(20):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    ours = lrs(lambda o: linear_warmup_decay(o, 4, 20))
    theirs = lrs(lambda o: get_linear_schedule_with_warmup(o, 4, 20))
    exact = dict(rel=1e-12, abs=1e-15)  # float64 ratios of step counts below 20: one or two roundings of 2^-53 each
    assert ours == pytest.approx(theirs, **exact)
    assert ours[0] == 0 and ours[4] == 1.0 and ours[2] == 0.5 and ours[12] == pytest.approx(0.5, **exact)
    assert warmup_steps_for(95, 0.1) == 10 and warmup_steps_for(100, 0.0) == 0


def test_clip_gradients_caps_the_global_norm(tiny):
    for p in tiny.network.parameters():
        p.grad = torch.full_like(p, 10.0)
    before = clip_gradients(tiny.network, 1.0)
    after = torch.sqrt(sum((p.grad ** 2).sum() for p in tiny.network.parameters()))
    n = sum(p.numel() for p in tiny.network.parameters())
    # Clipping scales by 1 / (norm + 1e-6): off by 1e-6 / norm < 1e-8. Both norms sum n equal squares in float32
    # with torch's pairwise (cascade) sum: <= log2(n) roundings of 2^-24 each, 4x that leaves room for the sqrt and
    # the per-tensor partial sums. A per-tensor clip would give sqrt(#tensors) here, no clip the full norm.
    assert float(before) > 100 and float(after) == pytest.approx(1.0, rel=4 * math.log2(n) * EPS32)
    assert clip_gradients(tiny.network, None) is None


# -- seeding and batches --------------------------------------------------------------------------
def test_seed_everything_fixes_every_generator():
    def draw():
        g = seed_everything(123)
        return (random.random(), float(np.random.rand()), float(torch.rand(1)), float(torch.rand(1, generator=g)))

    assert draw() == draw()
    g = seed_everything(124)
    assert float(torch.rand(1, generator=g)) != draw()[3]


def test_batch_stream_respects_budget_and_covers_every_example_once():
    lengths = [int(x) for x in np.random.default_rng(0).integers(3, 60, size=300)]
    encs = fake_encodings(lengths)
    stream = BatchStream(encs, list(range(300)), batch_tokens=512, batch_size=24, generator=seed_everything(1))
    for epoch in range(3):
        plan = stream.plan(epoch)
        assert sorted(i for b in plan for i in b) == list(range(300))
        for b in plan:
            assert len(b) <= 24 and len(b) * max(lengths[i] for i in b) <= 512
    assert stream.plan(0) != stream.plan(1)  # a fresh order each epoch
    # Similar lengths share a batch, but batches are not in length order (shuffled between buckets).
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in stream.plan(0)]
    assert np.mean(spread) < 15
    firsts = [lengths[b[0]] for b in stream.plan(0)]
    assert firsts != sorted(firsts) and firsts != sorted(firsts, reverse=True)
    # The plan depends on the seed only, so a new stream (a resumed run) rebuilds it exactly.
    again = BatchStream(encs, list(range(300)), batch_tokens=512, batch_size=24, generator=seed_everything(1))
    assert again.plan(2) == stream.plan(2)
    other = BatchStream(encs, list(range(300)), batch_tokens=512, batch_size=24, generator=seed_everything(2))
    assert other.plan(0) != stream.plan(0)


def test_batch_stream_packs_labels_and_resumes_mid_epoch():
    encs = fake_encodings([5, 7, 9, 11, 13, 15])
    labels = [0, 1, 0, 1, 0, 1]
    stream = BatchStream(encs, labels, batch_size=2, generator=seed_everything(0))
    batches = list(stream.epoch(0))
    assert len(batches) == 3
    for b in batches:
        assert b.labels.tolist() == [labels[i] for i in b.index]
        assert b.input_ids.tolist() == [t for i in b.index for t in encs[i].ids]  # packed, no padding
    tail = list(stream.epoch(0, start=1))
    assert [b.index for b in tail] == [b.index for b in batches[1:]]
    multi = BatchStream(encs, [[1, 0], [0, 1], [1, 1], [0, 0], [1, 0], [0, 1]], batch_size=3, shuffle=False)
    assert next(multi.epoch(0)).labels.dtype == torch.float32


def test_batch_stream_refuses_a_budget_below_the_longest_example():
    with pytest.raises(BertkitError, match="batch-tokens"):
        BatchStream(fake_encodings([5, 50]), batch_tokens=20)


def test_stratified_subset_keeps_class_proportions():
    ds = TextDataset([f"t{i}" for i in range(1000)], [0] * 800 + [1] * 200, ["a", "b"])
    sub = stratified_subset(ds, 100, seed=0)
    assert len(sub) == 100 and sub.label_counts() == {"a": 80, "b": 20}
    assert stratified_subset(ds, 5000) is ds
    with pytest.raises(BertkitError):
        stratified_subset(ds, 0)


def test_encode_dataset_truncates_and_says_so(tiny):
    ds = TextDataset(["short", "word " * 50], [0, 1], ["neg", "pos"])
    with pytest.warns(UserWarning, match="1 of 2 texts"):
        encs = encode_dataset(tiny, ds, max_length=16)
    assert [len(e) for e in encs] == [3, 16]


# -- loss and steps -------------------------------------------------------------------------------
def test_classification_loss_single_multi_and_weighted():
    torch.manual_seed(0)
    logits = torch.randn(6, 3)
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    # Float32 losses that are means or sums of at most 18 positive terms: the two orders of summation differ by at
    # most 18 roundings of 2^-24 each, i.e. 9 ulps (a wrong reduction or weighting is off by 10% or more).
    rel = 9 * EPS32
    assert classification_loss(logits, y) == pytest.approx(float(F.cross_entropy(logits, y)), rel=rel)
    assert classification_loss(logits, y, reduction="sum") == pytest.approx(float(F.cross_entropy(logits, y)) * 6, rel=rel)
    w = torch.tensor([1.0, 2.0, 3.0])
    assert classification_loss(logits, y, w) == pytest.approx(float(F.cross_entropy(logits, y, weight=w)), rel=rel)
    ind = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=torch.float32)
    assert classification_loss(logits, ind) == pytest.approx(float(F.binary_cross_entropy_with_logits(logits, ind)), rel=rel)


def test_balanced_class_weights():
    rel = EPS32  # ratios of small counts, each rounded once to float32: within 2^-24 of the exact value
    w = balanced_class_weights([0, 0, 0, 1], 3)
    assert w.tolist() == pytest.approx([4 / 6, 2.0, 0.0], rel=rel)  # n / (k * n_c) over present classes; an absent one weighs 0
    pos = balanced_class_weights([[1, 0], [1, 1], [1, 0], [0, 0]], 2)
    assert pos.tolist() == pytest.approx([1 / 3, 3.0], rel=rel)  # negatives / positives per label


def test_gradient_accumulation_equals_one_big_batch(tiny_base_dir):
    """Two accumulated batches give the same update as one batch holding both (dropout off).

    Plain SGD with lr 1 makes the update exactly minus the gradient, so a wrongly weighted batch shows at full size
    (Adam's first step, lr * g / (|g| + eps), is blind to the gradient's scale and turns rounding noise into lr / eps
    times as much). The network runs in float64, so reduction order cannot matter; only the loss is float32
    (classification_loss casts the logits), which leaves each example's logit gradient a few float32 ulps of noise.
    """
    ids, types = random_sequences([6, 9, 12, 7, 10], seed=3)
    labels = [0, 1, 1, 0, 1]
    results = []
    for groups in ([[0, 1], [2, 3, 4]], [[0, 1, 2, 3, 4]]):
        model = bertkit.load(tiny_base_dir, device="cpu")
        seed_everything(0)
        model.network.add_classifier({0: "neg", 1: "pos"})
        model.network.eval().double()  # no dropout: the two must match
        before = {k: v.clone() for k, v in model.network.state_dict().items()}
        opt = torch.optim.SGD(model.network.parameters(), lr=1.0)
        batches = [bertkit.pack([ids[i] for i in g], [types[i] for i in g], [labels[i] for i in g]) for g in groups]
        loss, _ = train_step(model.network, batches, opt, max_grad_norm=None)
        after = model.network.state_dict()
        results.append((float(loss), {k: before[k] - after[k] for k in before}, before))
    (loss_acc, update_acc, weights), (loss_one, update_one, _) = results
    # The summed loss is a float32 sum of positive terms: 2 batches vs 1 is at most 2 more roundings of 2^-24 each.
    assert loss_acc == pytest.approx(loss_one, rel=2 * EPS32)
    eps64 = torch.finfo(torch.float64).eps
    for k, want in update_one.items():
        # float32 logit gradients (a few ulps each, 16 ulps over 5 examples) scale the whole update; w - g is rounded
        # at the weight's magnitude (one float64 ulp of |w|). A misweighted batch is off by 20% or more.
        tol = 16 * EPS32 * float(want.abs().max()) + 2 * eps64 * float(weights[k].abs().max())
        assert float((update_acc[k] - want).abs().max()) <= tol, k
    assert any(float(u.abs().max()) > 1e-4 for u in update_one.values())  # the step did move the weights


def test_train_step_updates_weights_and_keeps_values_on_device(tiny):
    ids, types = random_sequences([8, 8, 8, 8], seed=1)
    batch = bertkit.pack(ids, types, [0, 1, 0, 1])
    opt = make_optimizer(tiny.network, lr=1e-3)
    before = tiny.network.classifier.linear.weight.detach().clone()
    tiny.network.train()
    loss, norm = train_step(tiny.network, [batch], opt, linear_warmup_decay(opt, 0, 10), max_grad_norm=1.0)
    assert isinstance(loss, torch.Tensor) and isinstance(norm, torch.Tensor)
    assert not torch.equal(before, tiny.network.classifier.linear.weight)
    assert all(p.grad is None for p in tiny.network.parameters())


# -- state ----------------------------------------------------------------------------------------
def test_rng_state_round_trips_through_a_safe_load(tmp_path):
    g = seed_everything(7)
    torch.rand(3, generator=g)
    state = rng_state(g)
    torch.save(state, tmp_path / "rng.pt")
    expected = (random.random(), float(np.random.rand()), np.random.randn(), float(torch.rand(1)),
                float(torch.rand(1, generator=g)))
    seed_everything(999)
    g2 = torch.Generator()
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True), g2)
    assert (random.random(), float(np.random.rand()), np.random.randn(), float(torch.rand(1)),
            float(torch.rand(1, generator=g2))) == expected


def test_checkpoints_are_whole_or_absent_and_pruned(tiny, tmp_path):
    root = tmp_path / "checkpoints"
    first = save_checkpoint(root, tiny.network, {"step": 1})
    second = save_checkpoint(root, tiny.network, {"step": 2}, keep=(first.name,))
    third = save_checkpoint(root, tiny.network, {"step": 3}, keep=(first.name,))
    assert first.exists() and not second.exists() and latest_checkpoint(root) == third
    # A save killed half-way leaves only a hidden temporary folder: never taken for a checkpoint.
    broken = root / ".tmp-checkpoint-abc"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"half")
    assert latest_checkpoint(root) == third
    assert load_training_state(third)["step"] == 3
    save_checkpoint(root, tiny.network, {"step": 4})
    assert not broken.exists()
    (latest_checkpoint(root) / "training_state.pt").write_bytes(b"garbage")
    with pytest.raises(BertkitError, match="cannot be read"):
        load_training_state(latest_checkpoint(root))


# -- the hand-written loop example -----------------------------------------------------------------
def test_manual_loop_example_runs_and_is_short(tiny_base_dir):
    script = ROOT / "examples" / "manual_loop.py"
    assert len(script.read_text().splitlines()) <= 40
    env = dict(os.environ, BERTKIT_EXAMPLE_SIZE="48", BERTKIT_EXAMPLE_MODEL=str(tiny_base_dir),
               PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("accuracy ") and "held-out reviews" in last
    assert 0.0 <= float(last.split()[1]) <= 1.0


def test_one_step_matches_transformers(tiny_cls_dir):
    """Loss, gradients, clipping, decay groups and AdamW: one step of ours = one step of BertForSequenceClassification."""
    from transformers import BertForSequenceClassification

    from bertkit.checkpoint import to_hf_names
    from helpers import hf_padded_inputs

    ids, types = random_sequences([7, 12, 5, 9], seed=4)
    labels = [2, 0, 1, 2]
    ours = bertkit.load(tiny_cls_dir, device="cpu").network.eval()  # dropout off on both sides
    # Adam's first step is lr * g / (|g| + eps): float32 noise dg in a gradient (our loss and theirs sum in other
    # orders) moves it by up to lr * dg / eps, so eps 1e-3 keeps that gain at 10 where the default 1e-8 made it 1e6.
    # Decay 0.5 still makes a wrong decay group plainly visible: lr * 0.5 * |w| >= 3e-4 against tolerances <= 1e-6.
    lr, eps = 1e-2, 1e-3
    opt = make_optimizer(ours, lr=lr, weight_decay=0.5, eps=eps)
    loss, _ = train_step(ours, [bertkit.pack(ids, types, labels)], opt, max_grad_norm=0.5)

    hf = BertForSequenceClassification.from_pretrained(tiny_cls_dir).eval()
    start = {n: p.detach().clone() for n, p in hf.named_parameters()}
    no_decay = [p for n, p in hf.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    decay = [p for n, p in hf.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    hf_opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.5}, {"params": no_decay, "weight_decay": 0.0}],
                               lr=lr, eps=eps)
    out = hf(**hf_padded_inputs(ids, types), labels=torch.tensor(labels))
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(hf.parameters(), 0.5)
    hf_opt.step()

    # Mean cross-entropy moves by at most 2 x the largest logit difference; logits are 2 layers + pooler + classifier
    # deep (depth 5) over reductions of at most 512 terms; the loss's own float32 arithmetic adds a few ulps of it.
    logit_tol = fp32_tol(float(out.logits.detach().abs().max()), TINY_TERMS, depth=5)
    assert abs(float(loss) / 4 - out.loss.item()) <= 2 * logit_tol + 4 * EPS32 * out.loss.item()
    theirs = hf.state_dict()
    grads = {n: p.grad for n, p in hf.named_parameters()}
    moved = 0.0
    for name, tensor in to_hf_names(ours).items():
        if name not in grads:
            torch.testing.assert_close(tensor, theirs[name], atol=0, rtol=0, msg=name)  # buffers: untouched
            continue
        # Gradient noise: backward is as deep as forward plus the loss (depth 6) at the tensor's largest gradient,
        # times Adam's gain lr / eps; then decay and step each round the weight at its own magnitude, on both sides
        # (4 roundings of at most 1 ulp of max |w|).
        tol = (lr / eps) * fp32_tol(float(grads[name].abs().max()), TINY_TERMS, depth=6) \
            + 4 * EPS32 * float(start[name].abs().max())
        diff = float((tensor - theirs[name]).abs().max())
        assert diff <= tol, f"{name}: {diff:.3g} > {tol:.3g}"
        moved = max(moved, float((theirs[name] - start[name]).abs().max()))
    assert moved > 1e-3  # steps are ~1e-2: the comparison is not between two unchanged checkpoints
