"""The throughput benchmark: its FLOP count, and one real run of its CLI printing JSON lines."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from clam_jax.benchmark import loop_kernels_per_step, measure, model_flops_per_step, print_table
from clam_jax.cli import load_config
from clam_jax.models.lam import ActionDecoder, MLPLatentActionModel
from clam_jax.training.sharding import make_mesh

ROOT = Path(__file__).resolve().parents[1]


def test_model_flops_count_forward_and_backward_matrix_products():
    batch, obs, latent, hidden = 32, 10, 4, 64
    lam = MLPLatentActionModel(obs_dim=obs, latent_dim=latent, hidden=(hidden,), context=1)
    decoder = ActionDecoder(action_dim=3, embed_dim=8, hidden=(hidden,))
    params = (lam.init(jax.random.key(0), jnp.zeros((1, lam.window, obs))),
              decoder.init(jax.random.key(1), jnp.zeros((1, latent))))
    # Reconstruction: IDM (3*obs -> hidden -> latent) and FDM (2*obs + latent -> hidden -> obs).
    forward = 2 * batch * (3 * obs * hidden + hidden * latent + (2 * obs + latent) * hidden + hidden * obs)
    recon_only = model_flops_per_step(lam, decoder, *params, batch=batch, decoder_every=10**9)
    # Backward costs about twice the forward pass (less for the first layers, whose inputs need no gradient).
    assert 2.2 * forward < recon_only < 3.3 * forward
    assert model_flops_per_step(lam, decoder, *params, batch=batch, decoder_every=1) > 1.5 * recon_only


OPTIMIZED_HLO = """
%body (arg: (s32[], f32[4])) -> (s32[], f32[4]) {
  %arg = (s32[], f32[4]{0}) parameter(0)
  %i = s32[] get-tuple-element(%arg), index=0
  %x = f32[4]{0} get-tuple-element(%arg), index=1
  %one = s32[] constant(1)
  %next = s32[] add(%i, %one)
  %y = (f32[4]{0}, f32[4]{0}) fusion(%x), kind=kLoop, calls=%fused
  %y0 = f32[4]{0} get-tuple-element(%y), index=0
  %z = f32[4]{0} custom-call(%y0), custom_call_target="__cublas$gemm"
  %w = f32[2,2]{1,0} bitcast(%z)
  ROOT %out = (s32[], f32[4]{0}) tuple(%next, %z)
}

ENTRY %main (p: f32[4]) -> f32[4] {
  %p = f32[4]{0} parameter(0)
  %zero = s32[] constant(0)
  %init = (s32[], f32[4]{0}) tuple(%zero, %p)
  %loop = (s32[], f32[4]{0}) while(%init), condition=%cond, body=%body
  ROOT %r = f32[4]{0} get-tuple-element(%loop), index=1
}
"""


def test_kernels_per_step_count_the_loop_bodys_launches():
    # The body launches the counter's add, the fusion and the library call; 2 steps per iteration.
    assert loop_kernels_per_step(OPTIMIZED_HLO, 2) == 1.5
    assert loop_kernels_per_step(OPTIMIZED_HLO.replace(" while(", " call("), 1) is None


def test_a_measurements_compiler_options_reach_xla():
    config = load_config(ROOT / "configs/benchmark.py", "smoke")
    spec = ml_collections.ConfigDict({**config.measurements[0],
                                      "compiler_options": {"xla_gpu_command_buffer_scheduling_mode": "BOGUS"}})
    with pytest.raises(jax.errors.JaxRuntimeError, match="not a valid enum value"):
        measure(config, make_mesh(), spec)


def test_the_table_has_a_column_of_compiler_options_only_when_a_measurement_has_some():
    record = {"model": "mlp", "batch": 8, "steps_per_dispatch": 4, "seeds": 1, "compute_dtype": "float32",
              "steps_per_s": 1.0, "samples_per_s": 8.0, "flops_per_step": 1e6, "kernels_per_step": None,
              "utilization": None, "compiler_options": {}}
    options = {"xla_gpu_command_buffer_scheduling_mode": "CONCURRENT"}
    plain, mixed = io.StringIO(), io.StringIO()
    print_table([record], out=plain)
    print_table([record, {**record, "compiler_options": options}], out=mixed)
    assert "compiler_options" not in plain.getvalue()
    header, _, default, concurrent = mixed.getvalue().splitlines()
    assert header.endswith("| compiler_options |") and default.endswith("| - |")
    assert concurrent.endswith("| xla_gpu_command_buffer_scheduling_mode=CONCURRENT |")


def test_benchmark_cli_prints_one_json_line_per_measurement_and_a_table(tmp_path):
    out = tmp_path / "bench.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "clam_jax.benchmark", "--config=configs/benchmark.py:smoke", f"--json_out={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 1
    record = records[0]
    for key in ("model", "batch", "steps_per_dispatch", "seeds", "steps_per_s", "samples_per_s", "flops_per_step",
                "device"):
        assert key in record
    assert (record["model"], record["batch"], record["seeds"]) == ("mlp", 8, 2)
    assert record["samples_per_s"] == pytest.approx(record["steps_per_s"] * 8 * 2, rel=0.01)  # both rounded
    assert record["flops_per_step"] > 0 and record["params_per_seed"] == 5_011_003
    assert record["kernels_per_step"] > 0
    assert "| model | batch |" in result.stdout


def test_gpu_session_script_runs_the_benchmark_and_keeps_its_output(tmp_path):
    # The script a lent GPU runs in one call (benchmarks/gpu_session.sh), here with the smoke config on the CPU.
    env = dict(os.environ, CONFIG="configs/benchmark.py:smoke",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(["bash", "benchmarks/gpu_session.sh", str(tmp_path)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "benchmark exit status 0" in result.stdout
    assert "jax " in (tmp_path / "versions.txt").read_text()
    assert json.loads((tmp_path / "benchmark.jsonl").read_text())["model"] == "mlp"


def test_kernels_are_attributed_to_matrix_products_or_the_innermost_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_kernels import kernel_source
    traced = "jit(scan_steps)/while/body/closed_call/transpose(jvp(TransformerLatentActionModel.latents))/encoder"

    def fusion(kind: str, op_name: str) -> str:
        return f'%f = f32[8]{{0}} fusion(%x), kind={kind}, calls=%c, metadata={{op_name="{op_name}"}}'

    assert kernel_source(fusion("kCustom", traced + "/closed_call/layers/layers/qkv/qkv/dot_general")) == \
        "matrix products"
    assert kernel_source('%z = f32[4]{0} custom-call(%y), custom_call_target="__cublas$gemm"') == "matrix products"
    assert kernel_source(fusion("kInput", traced + "/closed_call/layers/layers/layers.residual/norm2/reduce_sum")) \
        == "norm"
    assert kernel_source(fusion("kLoop", traced + "/closed_call/layers/layers/self_attention/Dropout_0/lt")) == \
        "Dropout"
    assert kernel_source(fusion("kLoop", "jit(scan_steps)/while/body/closed_call/add")) == "outside the models"
    assert kernel_source("%copy.1 = f32[3,256]{1,0} copy(%p)") == "outside the models"


def test_gpu_profile_refuses_a_compiler_option_without_a_value():
    result = subprocess.run([sys.executable, "benchmarks/gpu_profile.py", "--compiler-option", "xla_gpu_foo"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "expected KEY=VALUE" in result.stderr and "'xla_gpu_foo'" in result.stderr


def test_busy_time_is_the_union_of_kernel_intervals():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_profile import busy_ns
    assert busy_ns([(0, 10), (5, 12), (20, 25), (21, 22)]) == 17
    assert busy_ns([]) == 0


def test_gpu_profile_traces_one_dispatch_and_reads_the_trace_back(tmp_path):
    # On a CPU the "kernels" are XLA's thread-pool events; on a GPU the default plane's stream lines.
    out = tmp_path / "profile.jsonl"
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_profile.py", "--model", "mlp", "--batch", "8", "--steps-per-dispatch", "4",
         "--seconds", "0", "--plane", "/host:CPU", "--line-prefix", "tf_XLA", "--top", "3", "--json-out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    profile = json.loads(out.read_text())["profile"]
    assert profile["traced_steps"] == 4 and profile["kernels_per_step"] > 0
    assert 0 < profile["busy_us_per_step"] <= profile["wall_us_per_step"]
    assert len(profile["top_kernels"]) == 3 and any(name.startswith("tf_XLA") for name in profile["lines"])


def test_gpu_profile_names_the_planes_when_the_device_plane_is_missing(tmp_path):
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_profile.py", "--model", "mlp", "--batch", "8", "--steps-per-dispatch", "2",
         "--seconds", "0", "--plane", "/device:TPU:7"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "no plane '/device:TPU:7' in the trace" in result.stderr and "/host:CPU" in result.stderr
