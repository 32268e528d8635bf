"""Where a stage-1 step's time goes: steps/s as `clam_jax.benchmark` measures them, then one traced dispatch.

The trace (jax.profiler, read back with `jax.profiler.ProfileData`) gives, per training step, the kernels the
device ran, the time it was busy (the union of the kernels' intervals) against the wall-clock time, and the
kernels that took most of it, grouped by name. Busy time well below wall time means the host's launches, not
the kernels, hold the step back. One JSON line per run, appended to `--json-out` if given.

XLA turns its command buffers (CUDA graphs) off while a profiler runs, unless compiled with
`xla_enable_command_buffers_during_profiling`: the program is compiled with it, so the traced dispatch runs
as the untraced ones do. `--compiler-option KEY=VALUE` adds XLA options to its compilation, over the
training loop's (`clam_jax.training.loop.LOOP_COMPILER_OPTIONS`).

  python benchmarks/gpu_profile.py --model transformer --batch 64 --steps-per-dispatch 100
  XLA_FLAGS=--xla_gpu_enable_triton_gemm=false python benchmarks/gpu_profile.py ...   # a variant, same program

On a CPU, `--plane /host:CPU --line-prefix tf_XLA` reads XLA's thread-pool events instead.
"""
import argparse
import json
import os
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import jax
import ml_collections

from clam_jax.benchmark import measure
from clam_jax.cli import load_config
from clam_jax.training.sharding import make_mesh

ROOT = Path(__file__).resolve().parents[1]


def busy_ns(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def trace_plane(trace_dir: str, plane_name: str):
    paths = sorted(Path(trace_dir).rglob("*.xplane.pb"))
    if not paths:
        raise FileNotFoundError(f"jax.profiler wrote no trace under {trace_dir}")
    planes = list(jax.profiler.ProfileData.from_file(str(paths[-1])).planes)
    plane = next((p for p in planes if p.name == plane_name), None)
    if plane is None:
        raise ValueError(f"no plane {plane_name!r} in the trace; it has {[p.name for p in planes]}")
    return plane


def profile(plane, line_prefix: str, steps: int, wall_s: float, top: int) -> dict:
    lines = list(plane.lines)
    events = [e for line in lines if line.name.startswith(line_prefix) for e in line.events if e.duration_ns > 0]
    by_name = defaultdict(lambda: [0, 0.0])
    for e in events:
        by_name[e.name][0] += 1
        by_name[e.name][1] += e.duration_ns
    kernel_ns = sum(total for _, total in by_name.values())
    ranked = sorted(by_name.items(), key=lambda item: -item[1][1])[:top]
    return {"traced_steps": steps, "wall_us_per_step": round(wall_s * 1e6 / steps, 1),
            "kernels_per_step": round(len(events) / steps, 1),
            "busy_us_per_step": round(busy_ns([(e.start_ns, e.end_ns) for e in events]) / 1e3 / steps, 1),
            "kernel_us_per_step": round(kernel_ns / 1e3 / steps, 1),
            "lines": {line.name: len(list(line.events)) for line in lines},
            "top_kernels": [{"name": name[:120], "per_step": round(count / steps, 2),
                             "us_per_step": round(total / 1e3 / steps, 2)} for name, (count, total) in ranked]}


def compiler_option(text: str) -> tuple[str, str]:
    """A `--compiler-option` argument, KEY=VALUE, as (key, value)."""
    key, equals, value = text.partition("=")
    if not key or not equals:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. xla_gpu_enable_triton_gemm=false; got {text!r}")
    return key, value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="transformer", choices=["mlp", "transformer"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps-per-dispatch", type=int, default=100)
    parser.add_argument("--compute-dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--seconds", type=float, default=3.0, help="steps/s measurement time")
    parser.add_argument("--top", type=int, default=30, help="kernels listed, by time")
    parser.add_argument("--plane", default="/device:GPU:0")
    parser.add_argument("--line-prefix", default="Stream", help="the plane's lines that hold kernels")
    parser.add_argument("--compiler-option", type=compiler_option, action="append", default=[], metavar="KEY=VALUE",
                        help="an XLA option for the program's compilation, e.g. "
                             "xla_gpu_command_buffer_scheduling_mode=LHS (repeatable)")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--keep-trace", type=Path, help="copy the trace's .xplane.pb here")
    args = parser.parse_args()
    config = load_config(ROOT / "configs/benchmark.py")
    config.min_seconds = args.seconds
    options = {"xla_enable_command_buffers_during_profiling": True, **dict(args.compiler_option)}
    spec = ml_collections.ConfigDict(dict(model=args.model, batch=args.batch, seeds=1,
                                          steps_per_dispatch=args.steps_per_dispatch,
                                          compute_dtype=args.compute_dtype, compiler_options=options))
    record, run = measure(config, make_mesh(), spec)
    record["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            start = time.perf_counter()
            _, metrics = run["multi_step"](run["state"], run["data"])
            jax.block_until_ready(metrics)
            wall_s = time.perf_counter() - start
        if args.keep_trace:
            shutil.copy(sorted(Path(trace_dir).rglob("*.xplane.pb"))[-1], args.keep_trace)
        record["profile"] = profile(trace_plane(trace_dir, args.plane), args.line_prefix, args.steps_per_dispatch,
                                    wall_s, args.top)
    line = json.dumps(record)
    print(line, flush=True)
    if args.json_out:
        with open(args.json_out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
