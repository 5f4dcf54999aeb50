"""accel: token bucketing drops its dummies, compiled and static-shape runs equal eager, int8 is opt-in and flagged."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import packed, random_sequences

from bertkit import accel
from bertkit.attention import AttentionLayout, _padded_sdpa
from bertkit.batching import pack
from bertkit.checkpoint import load_network
from bertkit.config import BertConfig
from bertkit.modeling import BertNetwork

TOL = 1e-5


@pytest.fixture(scope="module")
def tiny_cls(tiny_cls_dir):
    return load_network(tiny_cls_dir).eval()


def labelled_batch(lengths, seed=0, labels=None):
    ids, types = random_sequences(lengths, seed=seed)
    return pack(ids, types, labels=labels or [i % 3 for i in range(len(lengths))])


def test_bucket_size_picks_listed_size_then_multiple():
    assert accel.bucket_size(100, 64) == 128
    assert accel.bucket_size(128, 64) == 128
    assert accel.bucket_size(100, 64, sizes=[512, 256]) == 256
    assert accel.bucket_size(600, 64, sizes=[512, 256]) == 640  # too big for every size: falls back to the multiple


def test_bucket_tokens_appends_dummies_that_slice_away(tiny_cls):
    batch = labelled_batch([5, 17, 3])
    b = accel.bucket_tokens(batch, 64)
    assert b.batch.num_tokens == 64 and b.num_tokens == 25 and b.num_dummy_tokens == 39
    assert b.batch.max_seqlen == 17  # dummies never lengthen the longest sequence
    assert b.batch.lengths[3:].tolist() == [17, 17, 5]
    assert b.batch.labels[3:].tolist() == [accel.IGNORE_LABEL] * 3
    assert b.batch.index == batch.index == [0, 1, 2]
    with torch.no_grad():
        states, want = b.tokens(tiny_cls(b.batch)), tiny_cls(batch)
        logits, want_logits = b.sequences(tiny_cls.classify(b.batch)), tiny_cls.classify(batch)
    assert states.shape == want.shape and (states - want).abs().max().item() < TOL
    assert logits.shape == want_logits.shape and (logits - want_logits).abs().max().item() < TOL
    # The dummy label is ignored by cross_entropy: the loss equals the real sequences' loss.
    with torch.no_grad():
        full = F.cross_entropy(tiny_cls.classify(b.batch), b.batch.labels)
    assert abs(full.item() - F.cross_entropy(want_logits, batch.labels).item()) < TOL


def test_bucket_tokens_is_a_no_op_on_a_bucket_size():
    batch = labelled_batch([32, 32])
    b = accel.bucket_tokens(batch, 64)
    assert b.batch is batch and b.num_dummy_tokens == 0


def test_padded_view_is_built_only_when_attention_needs_it():
    """The varlen path reads cu_seqlens alone; the padded bookkeeping (a host sync on CUDA) waits until used."""
    batch = packed(*random_sequences([4, 9, 9], seed=1))
    layout = AttentionLayout.for_batch(batch)
    assert not layout.use_varlen and layout._padded is None
    assert layout.scatter_index.tolist() == [0, 1, 2, 3] + list(range(9, 18)) + list(range(18, 27))
    assert layout._padded is not None and layout.key_mask.shape == (3, 1, 1, 9)

def test_compiled_network_matches_eager_on_cpu(tiny_cls):
    """The inductor-compiled dense blocks give the eager numbers (fp32, 1e-5), and uncompiling restores eager code."""
    net = copy.deepcopy(tiny_cls)
    batches = [labelled_batch(lengths, seed=i) for i, lengths in enumerate([[5, 40, 17], [33, 2, 9, 12]])]
    with torch.no_grad():
        want = [tiny_cls(b) for b in batches]
        want_layers = tiny_cls(batches[0], all_layers=True)
    accel.compile_network(net, dynamic=False)
    assert accel.is_compiled(net)
    with torch.no_grad():
        for b, w in zip(batches, want):
            bucketed = accel.bucket_tokens(b, 64)  # both batches land on T=64: one shape
            got = bucketed.tokens(net(bucketed.batch))
            assert (got - w).abs().max().item() < TOL
        layers = net(batches[0], all_layers=True)
    assert all((a - b).abs().max().item() < TOL for a, b in zip(layers, want_layers))
    accel.uncompile_network(net)
    assert not accel.is_compiled(net) and "forward" not in net.encoder.layers[0].__dict__


def test_compiled_training_gradients_match_eager(tiny_cls_dir):
    """Backward through compiled blocks (AOTAutograd) gives eager's gradients; dropout off so both are deterministic."""
    cfg = BertConfig.from_json_file(tiny_cls_dir / "config.json")
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.0
    torch.manual_seed(0)
    eager = BertNetwork(cfg, classifier=True).train()
    compiled = accel.compile_network(copy.deepcopy(eager), dynamic=False, backend="aot_eager")
    batch = accel.bucket_tokens(labelled_batch([7, 20, 3, 11]), 64)
    for net in (eager, compiled):
        F.cross_entropy(batch.sequences(net.classify(batch.batch)), batch.sequences(batch.batch.labels)).backward()
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
        assert (a.grad - b.grad).abs().max().item() < TOL, name


def test_linear_weights_cast_once_give_autocasts_numbers_bit_for_bit(tiny_cls):
    """Storing Linear weights in bf16 is what bf16 autocast does every forward: outputs must be identical."""
    batch = labelled_batch([5, 40, 17])
    cast = accel.cast_linear_weights(copy.deepcopy(tiny_cls))
    assert accel.linear_weights_dtype(cast) == torch.bfloat16 and accel.linear_weights_dtype(tiny_cls) is None
    assert cast.encoder.layers[0].ffn.up.weight.dtype == torch.bfloat16
    assert cast.encoder.embeddings.norm.weight.dtype == torch.float32  # LayerNorms stay fp32, as under autocast
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        want_states, want_logits = tiny_cls(batch), tiny_cls.classify(batch)
        got_states, got_logits = cast(batch), cast.classify(batch)
    assert torch.equal(got_states, want_states) and torch.equal(got_logits, want_logits)
    with torch.no_grad():
        assert (want_states.float() - tiny_cls(batch)).abs().max().item() > 1e-4  # bf16 really ran


def test_compiled_bf16_inference_path_matches_eager_autocast(tiny_cls):
    """The GPU benchmark's inference path (bf16 weights, compiled blocks, bf16 autocast) run on the CPU:
    within bf16 rounding of the eager autocast network, and the layer outputs all come back."""
    batch = accel.bucket_tokens(labelled_batch([5, 40, 17]), 64)
    fast = accel.compile_network(accel.cast_linear_weights(copy.deepcopy(tiny_cls)), dynamic=False)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = tiny_cls.classify(batch.batch).float()
        got = fast.classify(batch.batch).float()
        layers = fast(batch.batch, all_layers=True)
    assert (got - want).abs().max().item() < 3e-2
    assert len(layers) == tiny_cls.config.num_hidden_layers + 1


def test_cast_linear_weights_refuses_a_network_in_training_mode(tiny_cls_dir):
    with pytest.raises(Exception, match="inference"):
        accel.cast_linear_weights(load_network(tiny_cls_dir).train())


def test_a_cast_network_can_be_neither_saved_nor_trained(tiny_cls_dir, tmp_path):
    """Its fp32 weights are gone: saving would write the rounded copy, training would update it."""
    import bertkit
    from bertkit.checkpoint import save_network
    from bertkit.data import TextDataset
    from bertkit.errors import BertkitError
    from bertkit.train import Trainer

    model = bertkit.load(tiny_cls_dir, device="cpu")
    accel.cast_linear_weights(model.network)
    with pytest.raises(BertkitError, match="load the checkpoint again"):
        save_network(model.network, tmp_path / "out")
    assert not (tmp_path / "out" / "model.safetensors").exists()
    data = TextDataset(["good", "bad"], [0, 1], model.labels[:2] or ["a", "b"], source="two rows")
    with pytest.raises(BertkitError, match="load the checkpoint again"):
        Trainer(model, data, progress=False)
    with pytest.raises(BertkitError, match="load the checkpoint again"):
        model.network.train()
    assert not model.network.eval().training  # inference stays allowed


@pytest.mark.parametrize("output", ["states", "pooled", "logits"])
def test_static_shape_runner_matches_eager_on_cpu(tiny_cls, output):
    """The CUDA-graph runner's fixed-shape inputs (dummy and empty sequences) change nothing; run eagerly off CUDA."""
    runner = accel.CudaGraphRunner(tiny_cls, output=output, token_multiple=128, min_seqlen=16, capture=False)
    b1, b2 = labelled_batch([5, 40, 17]), labelled_batch([36, 12, 9, 2], seed=3)
    with torch.no_grad():
        for b in (b1, b2):
            states = tiny_cls(b)
            pooled = tiny_cls.pooled(states, b)
            want = {"states": states, "pooled": pooled, "logits": tiny_cls.classifier(pooled)}[output]
            got = runner(b)
            assert got.shape == want.shape and (got - want).abs().max().item() < TOL
    assert runner.shape_for(b1) == runner.shape_for(b2) == (128, 8, 64)
    assert len(runner.graphs) == 1  # both batches reuse one shape


def test_static_inputs_pad_sequences_with_empty_slots():
    host = accel.static_inputs(labelled_batch([5, 7]), tokens=32, sequences=8, max_seqlen=8)
    assert host["input_ids"].shape == (32,) and host["cu_seqlens"].tolist() == [0, 5, 12, 20, 28, 32, 32, 32, 32]
    assert host["first_index"].max().item() == 31  # empty slots point inside the buffer
    with pytest.raises(ValueError):
        accel.static_inputs(labelled_batch([40]), tokens=64, sequences=8, max_seqlen=32)


def test_graph_runner_needs_cuda_to_capture(tiny_cls):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(Exception, match="CUDA"):
        accel.CudaGraphRunner(tiny_cls)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_replay_matches_eager_bf16(minilm_dir):
    net = load_network(minilm_dir).cuda().eval()
    runner = accel.CudaGraphRunner(net, output="states", token_multiple=256)
    for seed, lengths in enumerate([[1, 7, 300, 64], [12, 200, 5], [40, 40]]):
        batch = packed(*random_sequences(lengths, seed=seed)).to("cuda")
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            want = net(batch).float()
        got = runner(batch).float()
        assert (got - want).abs().max().item() < 5e-2
        assert F.cosine_similarity(got, want).min().item() > 0.999


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fast_inference_path_on_cuda_matches_eager_bf16(minilm_dir):
    """bench_gpu.py's fastest inference path: bf16-stored weights (bit-identical under autocast),
    inductor-compiled blocks, CUDA-graph replay; within bf16 rounding of the eager network."""
    eager = load_network(minilm_dir).cuda().eval()
    cast = accel.cast_linear_weights(copy.deepcopy(eager))
    batch = packed(*random_sequences([1, 7, 300, 64, 33], seed=9)).to("cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        want = eager(batch).float()
        assert torch.equal(cast(batch).float(), want)
    runner = accel.CudaGraphRunner(accel.compile_network(cast, dynamic=False), output="states", token_multiple=512)
    got = runner(batch).float()
    assert (got - want).abs().max().item() < 5e-2
    assert F.cosine_similarity(got, want).min().item() > 0.999


def test_int8_is_opt_in_close_and_flagged(minilm_dir):
    fp32 = load_network(minilm_dir).eval()
    assert not accel.is_quantized(fp32)
    q = accel.quantize_int8(fp32)
    assert accel.is_quantized(q) and not accel.is_quantized(fp32)
    assert type(fp32.encoder.layers[0].ffn.down) is torch.nn.Linear  # the original is untouched
    assert type(q.encoder.layers[0].ffn.down) is accel.Int8Linear
    batch = packed(*random_sequences([12, 30, 7], seed=4))
    with torch.no_grad():
        a, b = fp32(batch), q(batch)
    cosine = F.cosine_similarity(a, b).mean().item()
    assert cosine > 0.9  # close ...
    assert (a - b).abs().max().item() > 1e-3  # ... but not the checkpoint's numbers, hence the flag


def test_grouped_cpu_attention_equals_padded_view():
    """attention.py's CPU inference shortcut (SDPA per equal-length run) gives the padded view's numbers."""
    batch = packed(*random_sequences([3, 3, 3, 9, 9, 20], seed=6))
    layout = AttentionLayout.for_batch(batch)
    assert layout.groups == [(0, 3, 3), (9, 2, 9), (27, 1, 20)]
    q, k, v = torch.randn(batch.num_tokens, 3, 4, 8).unbind(1)
    with torch.no_grad():
        grouped = _padded_sdpa(q, k, v, layout, 0.0)
    padded = _padded_sdpa(q.requires_grad_(), k, v, layout, 0.0)  # under autograd the padded view is used
    assert (grouped - padded).abs().max().item() < TOL
    mixed = packed(*random_sequences(list(range(1, 21)), seed=7))
    assert AttentionLayout.for_batch(mixed).groups is None  # many runs: one padded call is cheaper
