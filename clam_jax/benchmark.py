"""Stage-1 training throughput: `python -m clam_jax.benchmark --config=configs/benchmark.py[:gpu]`.

For each measurement of the config (model, batch, steps per dispatch K, seeds,
compute dtype) it trains the paper-size LAM and decoder with the same jitted
multi-step program as `clam_jax.train`, over in-memory synthetic episodes,
and prints one JSON line: steps/s, samples/s, model FLOPs per step (XLA's cost
analysis of the forward and backward passes; XLA counts a `lax.cond` as its
costlier branch and a scan body once, so the two losses are analysed apart and
weighted by how often each runs), the kernels the compiled loop launches per
step (small models on an accelerator are bound by their count, not by FLOPs)
and, where the device's peak is known, utilisation. A table of all measurements
follows at the end.
"""
import functools
import json
import re
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from clam_jax.data.windows import pad_episodes
from clam_jax.methods import clam
from clam_jax.models.lam import ActionDecoder, make_latent_action_model
from clam_jax.training.loop import loop_compiler_options, make_multi_step, usable_period
from clam_jax.training.optim import make_optimizer
from clam_jax.training.sharding import batch_split, init_replicated, make_mesh, put_replicated

# Dense peak FLOP/s per chip by jax device_kind prefix: (bfloat16, float32). float32 matrix products run
# as TF32 on NVIDIA GPUs under JAX's default precision, so the float32 peak there is the TF32 one.
PEAK_FLOPS = {
    "NVIDIA H100": (989e12, 494e12),
    "NVIDIA H200": (989e12, 494e12),
    "NVIDIA A100": (312e12, 156e12),
    "TPU v4": (275e12, 275e12),
    "TPU v5 lite": (197e12, 197e12),
    "TPU v5p": (459e12, 459e12),
}
TRANSFORMER = dict(embed_dim=256, num_heads=4, mlp_dim=2048, num_layers=3, dropout=0.1)
REFERENCE_BATCH = {"mlp": 128, "transformer": 64}  # the PyTorch reference's (../shared/bench/torch_ref.py)


def build_models(config, model: str, compute_dtype: str):
    lam = make_latent_action_model(model, obs_dim=config.obs_dim, latent_dim=config.latent_dim, context=1,
                                   future=0, dtype=compute_dtype, hidden=(1024, 1024), transformer=TRANSFORMER)
    decoder = ActionDecoder(action_dim=config.action_dim, embed_dim=512, hidden=(1024, 1024, 1024),
                            dtype=compute_dtype)
    return lam, decoder


def synthetic_data(config, lam) -> dict:
    rng = np.random.default_rng(0)
    shape = lambda n: (n, config.episode_steps + 1, config.obs_dim)
    return {"unlabeled": pad_episodes(rng.normal(size=shape(config.unlabeled_episodes)).astype(np.float32),
                                      lam.context, lam.future),
            "labeled": pad_episodes(rng.normal(size=shape(config.labeled_episodes)).astype(np.float32),
                                    lam.context, lam.future),
            "labeled_actions": rng.uniform(-1, 1, (config.labeled_episodes, config.episode_steps + 1,
                                                   config.action_dim)).astype(np.float32)}


def lowered_flops(fn, *args) -> float:
    return float(jax.jit(fn).lower(*args).cost_analysis()["flops"])


def model_flops_per_step(lam, decoder, lam_params, decoder_params, *, batch: int, decoder_every: int) -> float:
    """Forward + backward FLOPs of the reconstruction loss every step and the decoder loss every K-th.

    Counted by XLA's cost analysis of the lowered programs on the host's CPU backend: nothing is compiled
    (an H100 compiles and autotunes a transformer program for tens of seconds), and the GPU and TPU
    plugins have no analysis of lowered programs."""
    cpu = jax.devices("cpu")[0]
    lam_params, decoder_params = jax.device_put((lam_params, decoder_params), cpu)
    with jax.default_device(cpu):
        windows = jnp.zeros((batch, lam.window, lam.obs_dim))
        actions = jnp.zeros((batch, decoder.action_dim))

        def reconstruction(lam_params):
            _, prediction = lam.apply(lam_params, windows)
            return jnp.mean(jnp.square(prediction - lam.reconstruction_target(windows)))

        def decoded(lam_params, decoder_params):
            z = lam.apply(lam_params, windows, method=lam.idm)
            return jnp.mean(jnp.square(decoder.apply(decoder_params, z) - actions))

        recon = lowered_flops(jax.grad(reconstruction), lam_params)
        decoder_flops = lowered_flops(jax.grad(decoded, argnums=(0, 1)), lam_params, decoder_params)
    return recon + decoder_flops / decoder_every


def peak_flops(device, compute_dtype: str) -> float | None:
    for prefix, (bf16, fp32) in PEAK_FLOPS.items():
        if device.device_kind.startswith(prefix):
            return bf16 if compute_dtype == "bfloat16" else fp32
    return None


def timed_dispatches(multi_step, state, data, steps_per_dispatch: int, min_seconds: float):
    """Runs whole dispatches for at least `min_seconds`; returns (state, steps, seconds)."""
    state, metrics = multi_step(state, data)  # compile and warm up
    jax.block_until_ready(metrics)
    steps, start = 0, time.perf_counter()
    while True:
        state, metrics = multi_step(state, data)
        steps += steps_per_dispatch
        jax.block_until_ready(metrics)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return state, steps, elapsed


# Instructions of optimized HLO that launch nothing.
BOOKKEEPING = ("parameter", "get-tuple-element", "tuple", "bitcast", "constant")


def loop_kernels(hlo_text: str) -> list[str] | None:
    """The instructions that launch kernels (fusions, library calls, copies: all but bookkeeping) in the body
    of the entry computation's while loop with the most of them, in an optimized HLO module; None without a
    loop."""
    entry = re.search(r"\nENTRY .*?\n}\n", hlo_text, re.S).group(0)
    bodies = []
    for body in re.findall(r" while\(.*?\), condition=%[\w.\-]+, body=%([\w.\-]+)", entry):
        text = re.search(r"\n%" + re.escape(body) + r" .*?\n}\n", hlo_text, re.S).group(0)
        instructions = re.finditer(r"^\s*(?:ROOT )?%[\w.\-]+ = .*? ([a-z][\w\-]*)\(.*$", text, re.M)
        bodies.append([match.group(0) for match in instructions if match.group(1) not in BOOKKEEPING])
    return max(bodies, key=len) if bodies else None


def loop_kernels_per_step(hlo_text: str, steps_per_iteration: int) -> float | None:
    """Kernels launched per step by the training loop of an optimized HLO module (`loop_kernels`)."""
    kernels = loop_kernels(hlo_text)
    return None if kernels is None else len(kernels) / steps_per_iteration


def stage1_program(config, spec, batch_sharding):
    """The measured LAM and decoder, `init(key) -> state` and the jitted program of K stage-1 steps (with the
    training loop's XLA options, `loop_compiler_options`)."""
    lam, decoder = build_models(config, spec.model, spec.compute_dtype)
    lam_tx = make_optimizer(lr=3e-4, weight_decay=1e-3, warmup=1000, clip=1.0)
    decoder_tx = make_optimizer(lr=1e-3, weight_decay=0.01, warmup=1000, clip=1.0)
    step = clam.make_stage1_step(lam, decoder, lam_tx, decoder_tx, batch_size=spec.batch,
                                 labeled_batch_size=spec.batch, decoder_every=config.decoder_every, beta=1.0,
                                 batch_sharding=batch_sharding)
    init = functools.partial(clam.init_stage1, lam=lam, decoder=decoder, lam_tx=lam_tx, decoder_tx=decoder_tx)
    multi_step = make_multi_step(step, spec.steps_per_dispatch, seeds=spec.seeds, period=config.decoder_every,
                                 compiler_options=loop_compiler_options(batch_sharding.mesh))
    return lam, decoder, init, multi_step


def measure(config, mesh, spec) -> tuple[dict, dict]:
    """One measurement; returns its JSON record and what a timed long run needs."""
    lam, decoder, init, multi_step = stage1_program(config, spec, batch_split(mesh))
    data = put_replicated(synthetic_data(config, lam), mesh)
    if spec.seeds > 1:
        init = jax.vmap(init)
        keys = jax.random.split(jax.random.key(0), spec.seeds)
    else:
        keys = jax.random.key(0)
    state = init_replicated(init, mesh, keys)
    single = jax.tree.map(lambda x: x[0], state) if spec.seeds > 1 else state
    params = sum(x.size for x in jax.tree.leaves((single.lam_params, single.decoder_params)))
    flops = spec.seeds * model_flops_per_step(lam, decoder, single.lam_params, single.decoder_params,
                                              batch=spec.batch, decoder_every=config.decoder_every)
    options = {**loop_compiler_options(mesh), **spec.get("compiler_options", {})}  # the measurement's prevail
    multi_step = multi_step.lower(state, data).compile(compiler_options=options)
    period = usable_period(spec.steps_per_dispatch, config.decoder_every)  # steps per iteration of the loop
    kernels = (loop_kernels_per_step(multi_step.as_text(), period) if spec.steps_per_dispatch > period
               else None)  # one iteration or one step: no training loop
    state, steps, seconds = timed_dispatches(multi_step, state, data, spec.steps_per_dispatch, config.min_seconds)
    steps_per_s = steps / seconds
    device = jax.devices()[0]
    peak = peak_flops(device, spec.compute_dtype)
    record = {
        "model": spec.model, "batch": spec.batch, "steps_per_dispatch": spec.steps_per_dispatch,
        "seeds": spec.seeds, "compute_dtype": spec.compute_dtype, "steps_per_s": round(steps_per_s, 2),
        "samples_per_s": round(steps_per_s * spec.batch * spec.seeds, 1), "flops_per_step": flops,
        "kernels_per_step": kernels,
        "utilization": None if peak is None else round(flops * steps_per_s / (peak * mesh.size), 5),
        "params_per_seed": int(params), "device": device.device_kind, "platform": device.platform,
        "num_devices": mesh.size, "jax": jax.__version__, "compiler_options": options}
    return record, {"multi_step": multi_step, "state": state, "data": data}


def time_to_steps(run: dict, steps_per_dispatch: int, steps: int) -> float:
    """Wall-clock seconds to train `steps` more steps with an already compiled program."""
    multi_step, state, data = run["multi_step"], run["state"], run["data"]
    start = time.perf_counter()
    for _ in range(steps // steps_per_dispatch):
        state, metrics = multi_step(state, data)
    jax.block_until_ready(metrics)
    return time.perf_counter() - start


def long_run(config, record: dict, run: dict) -> dict:
    """Times `config.time_to_steps` steps, or as many whole dispatches as the measured rate fits into
    `config.time_to_steps_budget_s` (then the full run's time is extrapolated and marked so)."""
    k = record["steps_per_dispatch"]
    affordable = int(record["steps_per_s"] * config.time_to_steps_budget_s) // k * k
    steps = max(k, min(config.time_to_steps, affordable))
    seconds = time_to_steps(run, k, steps)
    return {"steps": config.time_to_steps, "timed_steps": steps, "timed_seconds": round(seconds, 1),
            "seconds": round(seconds * config.time_to_steps / steps, 1),
            "extrapolated": steps < config.time_to_steps}


def print_table(records: list[dict], out=sys.stdout) -> None:
    """The records as a Markdown table; a column of compiler options when any measurement has some."""
    columns = ("model", "batch", "steps_per_dispatch", "seeds", "compute_dtype", "steps_per_s", "samples_per_s",
               "flops_per_step", "kernels_per_step", "utilization")
    if any(r["compiler_options"] for r in records):
        columns += ("compiler_options",)

    def cell(r: dict, column: str) -> str:
        if column == "flops_per_step":
            return f"{r[column]:.3g}"
        if column == "compiler_options":
            return " ".join(f"{k}={v}" for k, v in r[column].items()) or "-"
        return "-" if r[column] is None else str(r[column])

    print("| " + " | ".join(columns) + " |", file=out)
    print("|" + "---|" * len(columns), file=out)
    for r in records:
        print("| " + " | ".join(cell(r, c) for c in columns) + " |", file=out)


def main(argv):
    del argv
    config = flags.FLAGS.config
    mesh = make_mesh()
    records, timed = [], None
    for spec in config.measurements:
        spec = ml_collections.ConfigDict(spec)
        record, run = measure(config, mesh, spec)
        if config.time_to_steps and timed is None and spec.model == "transformer" and spec.seeds == 1 \
                and spec.steps_per_dispatch > 1:
            record["time_to_steps"] = long_run(config, record, run)
            timed = record
        records.append(record)
        line = json.dumps(record)
        print(line, flush=True)
        if flags.FLAGS.json_out:
            with open(flags.FLAGS.json_out, "a") as f:
                f.write(line + "\n")
    print_table(records)
    if timed:
        t = timed["time_to_steps"]
        how = f"extrapolated from {t['timed_steps']} steps in {t['timed_seconds']} s" if t["extrapolated"] else "timed"
        print(f"{t['steps']} steps of transformer CLAM at batch {timed['batch']}: {t['seconds']} s ({how}) "
              f"on {timed['device']}")


if __name__ == "__main__":
    # Defined here, not at import, so the functions above can be imported next to the other CLIs' flags.
    config_flags.DEFINE_config_file("config", "configs/benchmark.py",
                                    "Benchmark config, e.g. configs/benchmark.py:gpu.")
    flags.DEFINE_string("json_out", None, "Also append the JSON lines to this file.")
    app.run(main)
