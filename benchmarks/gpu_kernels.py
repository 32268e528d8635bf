"""Kernels per stage-1 step on an NVIDIA H100, counted without one (deviceless ahead-of-time compilation).

The state LAMs at paper size are bound on a GPU by how many kernels a step
launches, not by arithmetic (transformer CLAM: about 1.8 us per kernel on an
H100, 1.2% of its peak FLOP/s), so the kernel count of the compiled training
loop predicts their steps/s. This script compiles the benchmark's program
(`clam_jax.benchmark.stage1_program`) for an H100 on any machine and prints one
JSON line per model with its kernels per step: a change to the models or the
step can be judged here before a GPU is at hand. On the H100 itself the
compiled loop of the previous version launched 992 kernels per step (from its
optimized HLO) where this count gives 985; autotuning, which needs the device,
picks some matrix products' kernels differently.

It needs JAX's CUDA plugin, which runs without a GPU for this; install it beside
the project in a separate environment (about 4.5 GB):

  python -m venv /tmp/cuda
  /tmp/cuda/bin/pip install "jax[cuda13]==$(python -c 'import jax; print(jax.__version__)')" -e .
  JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1 /tmp/cuda/bin/python benchmarks/gpu_kernels.py
  JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1 /tmp/cuda/bin/python benchmarks/gpu_kernels.py --models mlp --cublas

`--cublas` compiles matrix products as cuBLAS calls instead of Triton kernels;
a model whose products XLA cannot tile in Triton without autotuning (MLP-CLAM's
first layer) is counted that way, and its line says so. `--by-source` adds where
the kernels come from (`kernel_source`).
"""
import argparse
import collections
import json
import os
import re
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")  # deviceless even on a machine with a GPU

import jax  # noqa: E402
import ml_collections  # noqa: E402
from jax.experimental import topologies  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

from clam_jax.benchmark import REFERENCE_BATCH, loop_kernels, stage1_program, synthetic_data  # noqa: E402
from clam_jax.cli import load_config  # noqa: E402
from clam_jax.training.loop import usable_period  # noqa: E402
from clam_jax.training.sharding import DATA_AXIS  # noqa: E402

# XLA's description of an H100 SXM (its gpu_device_info, as a GPU reports it to XLA).
H100 = """
gpu_device_info {
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: 233472 threads_per_core_limit: 2048 core_count: 132 fpus_per_core: 128
  block_dim_limit_x: 2147483647 block_dim_limit_y: 65535 block_dim_limit_z: 65535
  memory_bandwidth: 3352320000000 l2_cache_size: 52428800 clock_rate_ghz: 1.98
  device_memory_size: 84929347584 shared_memory_per_block_optin: 232448
  cuda_compute_capability { major: 9 } registers_per_core_limit: 65536 registers_per_block_limit: 65536
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 28 }
runtime_version { major: 13 minor: 0 }
device_description_str: "NVIDIA H100 80GB HBM3"
"""
CUBLAS = {"xla_gpu_enable_triton_gemm": False}


# Components of an operation's name (its `op_name` metadata) that are JAX's or the loop's, not modules.
SCAFFOLDING = ("while", "body", "closed_call", "cond", "layers")


def kernel_source(instruction: str) -> str:
    """Where a kernel of the training loop comes from, read from its HLO instruction: "matrix products" for
    cuBLAS calls and Triton's matrix-product fusions; else the innermost Flax module (or method) its operation
    was traced in, numbers dropped ("norm" for norm1 .. norm3, "Dropout" for Dropout_0 ..); "outside the
    models" for operations traced outside any (the optimizer's updates, batch sampling, random keys, losses,
    gradient norms, metrics, copies of the loop's state)."""
    if "kind=kCustom" in instruction or 'custom_call_target="__cublas' in instruction:
        return "matrix products"
    op_name = re.search(r'op_name="([^"]*)"', instruction)
    if op_name is None or not re.search(r"[A-Z]", op_name.group(1)):  # no module class in its scopes
        return "outside the models"
    for part in reversed(op_name.group(1).split("/")[:-1]):  # the last part is the operation itself
        if "(" not in part and part not in SCAFFOLDING:
            return re.sub(r"_?\d+$", "", part.split(".")[-1])
    return "outside the models"


def compiled_loop(config, spec, mesh, compiler_options: dict) -> tuple[list[str], int]:
    """The kernels of one iteration of the compiled training loop, and the steps an iteration runs."""
    lam, _, init, multi_step = stage1_program(config, spec, NamedSharding(mesh, PartitionSpec(DATA_AXIS)))
    replicated = NamedSharding(mesh, PartitionSpec())
    on_mesh = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), tree)
    state = on_mesh(jax.eval_shape(init, jax.random.key(0)))
    data = on_mesh(jax.eval_shape(lambda: synthetic_data(config, lam)))
    compiled = multi_step.lower(state, data).compile(compiler_options=compiler_options)
    return loop_kernels(compiled.as_text()), usable_period(spec.steps_per_dispatch, config.decoder_every)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["transformer", "mlp"], choices=sorted(REFERENCE_BATCH))
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--cublas", action="store_true", help="matrix products as cuBLAS calls")
    parser.add_argument("--by-source", action="store_true", help="also the kernels per step by where they come from")
    args = parser.parse_args()
    topology = topologies.get_topology_desc(platform="cuda", target_config=H100, topology="1x1x1")
    mesh = topologies.make_mesh(topology, (1,), (DATA_AXIS,))
    config = load_config(Path(__file__).parents[1] / "configs/benchmark.py", "gpu")
    for model in args.models:
        spec = ml_collections.ConfigDict(dict(model=model, batch=REFERENCE_BATCH[model], steps_per_dispatch=1000,
                                              seeds=1, compute_dtype=args.dtype))
        cublas = args.cublas
        try:
            kernels, steps = compiled_loop(config, spec, mesh, CUBLAS if cublas else {})
        except jax.errors.JaxRuntimeError as error:  # a product Triton cannot tile without autotuning
            print(f"{model}: {str(error).splitlines()[0][:200]}; counting with cuBLAS products", flush=True)
            cublas, (kernels, steps) = True, compiled_loop(config, spec, mesh, CUBLAS)
        record = {"model": model, "batch": spec.batch, "compute_dtype": args.dtype,
                  "matmuls": "cublas" if cublas else "triton", "target": "NVIDIA H100 80GB HBM3",
                  "kernels_per_step": len(kernels) / steps, "jax": jax.__version__}
        if args.by_source:
            sources = collections.Counter(kernel_source(kernel) for kernel in kernels)
            record["by_source"] = {source: count / steps for source, count in sources.most_common()}
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
