#!/usr/bin/env bash
# The GPU measurements in one go, for a GPU machine lent for a few minutes: versions, the PyTorch reference
# on the same GPU, then `python -m clam_jax.benchmark --config=configs/benchmark.py:gpu` (with its timed
# 500k-step transformer run), everything also written under the output folder.
#
#   bash benchmarks/gpu_session.sh OUT_DIR
#
# Environment:
#   TORCH_REF   path of ../shared/bench/torch_ref.py on that machine (copy it into the checkout: ../shared does not
#               travel); unset, the reference is skipped.
#   WHEELS      a folder of wheels to install first, for machines with no package index (the benchmark needs
#               ml_collections beside JAX, flax and optax; fetch it on a connected machine with
#               `pip download --no-deps -d WHEELS ml-collections==1.1.0`, a pure-Python wheel).
#   CONFIG      the benchmark config (default configs/benchmark.py:gpu; configs/benchmark.py:smoke to try the
#               script on a CPU).
#   BENCH_LIMIT seconds the benchmark may run (default 420): a K=1000 compile takes 60-100 s on an H100, so the
#               sweep, most wanted measurements first, may be cut; its JSON lines so far are kept.
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu_session.sh OUT_DIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ -n "${WHEELS:-}" ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/gpu_session_site "$WHEELS"/*.whl || exit
  export PYTHONPATH="$PYTHONPATH:/tmp/gpu_session_site"
fi

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null
  python3 -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__, "optax",
optax.__version__, jax.devices())'
} 2>&1 | tee "$out/versions.txt"

if [[ -n "${TORCH_REF:-}" ]]; then
  for args in "--model mlp --batch 128 --steps 1000" "--model transformer --batch 64 --steps 300"; do
    echo "torch_ref.py $args"
    timeout 120 python3 "$TORCH_REF" $args
  done 2>&1 | tee "$out/torch_ref.txt"
fi

rm -f "$out/benchmark.jsonl"
timeout "${BENCH_LIMIT:-420}" python3 -m clam_jax.benchmark --config="${CONFIG:-configs/benchmark.py:gpu}" \
  --json_out="$out/benchmark.jsonl" 2>&1 | tee "$out/benchmark.txt"
echo "benchmark exit status ${PIPESTATUS[0]} (124: cut at ${BENCH_LIMIT:-420} s)"
