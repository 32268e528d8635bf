#!/usr/bin/env bash
# The GPU measurements in one go, for a GPU machine lent for a few minutes: versions, then the stages named in
# STAGES (default "benchmark ratio"):
#   benchmark  `python -m clam_jax.benchmark --config=configs/benchmark.py:gpu` (with its timed 500k-step
#              transformer run)
#   ratio      the ratios to the PyTorch reference on the same GPU (benchmarks/torch_ratio.py, K 1000), which reuse
#              the benchmark's compiled programs through a compilation cache
#   profile    benchmarks/gpu_profile.py: a traced dispatch of transformer CLAM at batch 64 (its trace kept,
#              gzipped), then the same with XLA's command buffers in XLA's default order instead of the training
#              loop's concurrent one, with cuBLAS matrix products instead of Triton's, in bfloat16, and MLP-CLAM
# Everything is also written under OUT_DIR.
#
#   bash benchmarks/gpu_session.sh OUT_DIR
#   STAGES=profile bash benchmarks/gpu_session.sh OUT_DIR
#
# Environment:
#   TORCH_REF   path of ../shared/bench/torch_ref.py on that machine (copy it into the checkout: ../shared does not
#               travel); unset, the ratios are skipped. `python3` there must have torch as well as JAX.
#   WHEELS      a folder of wheels to install first, for machines with no package index (the benchmark needs
#               ml_collections beside JAX, flax and optax; fetch it on a connected machine with
#               `pip download --no-deps -d WHEELS ml-collections==1.1.0`, a pure-Python wheel).
#   CONFIG      the benchmark config (default configs/benchmark.py:gpu; configs/benchmark.py:smoke to try the
#               script on a CPU).
#   BENCH_LIMIT seconds the benchmark may run (default 330): a K=1000 compile takes 60-100 s on an H100, so the
#               sweep, most wanted measurements first, may be cut; its JSON lines so far are kept. BENCH_ARGS is
#               added to its arguments (e.g. --config.time_to_steps_budget_s=30).
#   RATIO_LIMIT seconds the ratios may run (default 200); RATIO_ARGS replaces torch_ratio.py's arguments
#               (default --rounds 1 --seconds 5 --steps-per-dispatch 1000 --torch-steps 1000).
#   PROFILES    the profile's runs, in order (default "fp32 lhs cublas bf16 mlp", as above).
#   PROFILE_LIMIT seconds each of the profile's runs may take (default 140: an H100 once needed more than
#               95 s to compile the transformer's programs, when the FLOPs were still counted from compiled ones);
#               PROFILE_ARGS is added to each run's arguments.
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu_session.sh OUT_DIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/clam_jax_compilation_cache}
if [[ -n "${WHEELS:-}" ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/gpu_session_site \
    "$WHEELS"/*.whl || exit
  export PYTHONPATH="$PYTHONPATH:/tmp/gpu_session_site"
fi

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null
  python3 -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__, "optax",
optax.__version__, jax.devices())'
} 2>&1 | tee "$out/versions.txt"

stages=" ${STAGES:-benchmark ratio} "
if [[ $stages == *" benchmark "* ]]; then
  rm -f "$out/benchmark.jsonl"
  timeout "${BENCH_LIMIT:-330}" python3 -m clam_jax.benchmark --config="${CONFIG:-configs/benchmark.py:gpu}" \
    --json_out="$out/benchmark.jsonl" ${BENCH_ARGS:-} 2>&1 | tee "$out/benchmark.txt"
  echo "benchmark exit status ${PIPESTATUS[0]} (124: cut at ${BENCH_LIMIT:-330} s)"
fi

if [[ $stages == *" ratio "* && -n "${TORCH_REF:-}" ]]; then
  timeout "${RATIO_LIMIT:-200}" python3 benchmarks/torch_ratio.py --torch-python python3 --torch-ref "$TORCH_REF" \
    ${RATIO_ARGS:---rounds 1 --seconds 5 --steps-per-dispatch 1000 --torch-steps 1000} 2>&1 | tee "$out/torch_ratio.txt"
  echo "torch_ratio exit status ${PIPESTATUS[0]} (124: cut at ${RATIO_LIMIT:-200} s)"
fi

profile() {
  timeout "${PROFILE_LIMIT:-140}" python3 benchmarks/gpu_profile.py --json-out "$out/profile.jsonl" "$@" \
    ${PROFILE_ARGS:-} 2>&1 | tee -a "$out/profile.txt"
  echo "gpu_profile $* exit status ${PIPESTATUS[0]} (124: cut at ${PROFILE_LIMIT:-140} s)"
}
if [[ $stages == *" profile "* ]]; then
  rm -f "$out/profile.jsonl" "$out/profile.txt"
  for run in ${PROFILES:-fp32 lhs cublas bf16 mlp}; do
    case $run in
      fp32) profile --keep-trace "$out/transformer.xplane.pb" && gzip -f "$out/transformer.xplane.pb" ;;
      lhs) profile --compiler-option xla_gpu_command_buffer_scheduling_mode=LHS ;;
      cublas) XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_triton_gemm=false" profile ;;
      bf16) profile --compute-dtype bfloat16 ;;
      mlp) profile --model mlp --batch 128 ;;
      *) echo "unknown profile run $run (fp32, lhs, cublas, bf16 or mlp)"; exit 2 ;;
    esac
  done
fi
