"""The generic training loop: K steps per jitted dispatch with `lax.scan`.

Two kinds of dispatch feed it. `make_multi_step`: `step_fn(state, data)` samples
its batch from device-resident `data` with the RNG in the state, the same
arrays every dispatch. `make_multi_update`: `update_fn(state, batch)` is scanned
over a chunk of K batches streamed from the host (`clam_jax.data.streaming`).
Either way the host only syncs to log, check for non-finite losses, and save.
Metrics a step did not compute (e.g. the decoder loss on a reconstruction-only
step) are NaN and averaged out with nanmean; the loss itself is averaged with a
plain mean, so one non-finite step makes the whole chunk's loss non-finite.
"""
import functools
import itertools
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from clam_jax.errors import NonFiniteLossError

# XLA options for the scanned training programs, by platform. On GPUs XLA runs the loop's kernels in command
# buffers (CUDA graphs), by default in the order its latency-hiding scheduler chose ("LHS"); "CONCURRENT" orders
# them by their data dependencies alone, so that independent small kernels overlap. Transformer CLAM's stage-1
# step on an H200: 843 steps/s in XLA's order, 917-953 concurrent (README, "Performance").
LOOP_COMPILER_OPTIONS = {"gpu": {"xla_gpu_command_buffer_scheduling_mode": "CONCURRENT"}}


def loop_compiler_options(mesh) -> dict:
    """`LOOP_COMPILER_OPTIONS` for the platform of `mesh`'s devices."""
    return dict(LOOP_COMPILER_OPTIONS.get(mesh.devices.flat[0].platform, {}))


def scan_steps(step_fn, state, data, *, length: int, period: int = 1):
    """Runs `length` steps in one program; returns the state and per-metric chunk means.

    With a `period` > 1 that divides `length`, `step_fn(state, data, phase)` is told
    each step's place in a period of steps that differ in their work (CLAM updates
    its decoder every p-th step) and the scan body runs one whole period, so which
    work a step does is fixed when tracing. Otherwise `step_fn(state, data)` chooses
    at run time with `lax.cond`, which a seed axis (`vmap`) turns into computing
    both branches every step (1.56x slower for MLP-CLAM with 4 seeds on a CPU).

    One step is run without a loop: XLA:CPU runs convolutions inside a loop body
    about 20x slower than outside one (jax-ml/jax#12868; an IMPALA-CNN policy
    step measured 4 s against 0.2 s here), so CPU presets with image policies
    dispatch one step at a time.
    """
    if length == 1:
        state, metrics = step_fn(state, data)
        return state, _chunk_means(metrics)
    period = usable_period(length, period)

    def body(carry, _):
        return _run_period(lambda s, i: step_fn(s, data, **_phase(period, i)), carry, period)

    state, metrics = jax.lax.scan(body, state, None, length=length // period)
    return state, _chunk_means(metrics)


def scan_batches(update_fn, state, chunk, period: int = 1):
    """One update per leading entry of `chunk` (a pytree of [K, ...] arrays); returns chunk means.
    `period` as in `scan_steps`: `update_fn(state, batch, phase)` when it divides K."""
    length = jax.tree.leaves(chunk)[0].shape[0]
    period = usable_period(length, period)
    periods = jax.tree.map(lambda x: x.reshape(length // period, period, *x.shape[1:]), chunk)

    def body(carry, batches):
        return _run_period(lambda s, i: update_fn(s, jax.tree.map(lambda x: x[i], batches), **_phase(period, i)),
                           carry, period)

    state, metrics = jax.lax.scan(body, state, periods)
    return state, _chunk_means(metrics)


def usable_period(length: int, period: int) -> int:
    """The steps one iteration of the scanned loop runs: the whole period when it divides the length, else 1."""
    return period if period > 1 and length % period == 0 else 1


def _phase(period: int, i: int) -> dict:
    return {"phase": i} if period > 1 else {}


def _run_period(step, state, period: int):
    """`step(state, i)` for i in 0..period-1; returns the state and the metrics stacked over the period."""
    metrics = []
    for i in range(period):
        state, m = step(state, i)
        metrics.append(m)
    return state, jax.tree.map(lambda *x: jnp.stack(x), *metrics)


def _chunk_means(metrics: dict) -> dict:
    return {k: jnp.mean(v) if k == "loss" else jnp.nanmean(v) for k, v in metrics.items()}


def _interval_means(chunks: list[dict]) -> dict:
    """The chunk means of the dispatches since the last log, averaged as `_chunk_means` averages steps (all
    chunks have K steps): what is logged covers the whole interval also when K is smaller than it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a metric no step of the interval computed stays NaN
        return {k: np.mean([c[k] for c in chunks], axis=0) if k == "loss" else
                np.nanmean([c[k] for c in chunks], axis=0) for k in chunks[0]}


def make_multi_step(step_fn, steps_per_dispatch: int, seeds: int = 1, data_per_seed: bool = False,
                    period: int = 1, compiler_options: dict | None = None):
    """One jitted dispatch of K steps; with `seeds` > 1, over a leading seed axis of the state (and of the
    data if `data_per_seed`, else every seed samples the same data). `period`: see `scan_steps`;
    `compiler_options`: XLA's for the program (`loop_compiler_options`)."""
    chunk = functools.partial(scan_steps, step_fn, length=steps_per_dispatch, period=period)
    return jax.jit(over_seeds(chunk, data_per_seed) if seeds > 1 else chunk, donate_argnums=0,
                   compiler_options=compiler_options)


def make_multi_update(update_fn, period: int = 1, compiler_options: dict | None = None):
    """One jitted dispatch of `update_fn` over a chunk of K streamed batches (`period`: see `scan_steps`;
    `compiler_options` as for `make_multi_step`)."""
    return jax.jit(functools.partial(scan_batches, update_fn, period=period), donate_argnums=0,
                   compiler_options=compiler_options)


def device_inputs(data):
    """`train` inputs for a `make_multi_step` program: the same device-resident arrays every dispatch."""
    return lambda start_step: itertools.repeat(data)


def over_seeds(fn, data_per_seed: bool = False):
    """Maps `fn(state, data)` (a step or a scanned chunk) over a leading seed axis of the state, and of
    the data if `data_per_seed`.

    S independent runs (different init and sampling RNGs, the same or their own
    data) then train in one program, which fills an accelerator that one small
    state model cannot (see `clam_jax.training.seeds`).
    """
    return jax.vmap(fn, in_axes=(0, 0 if data_per_seed else None))


def train(state, multi_step, inputs, *, num_steps: int, steps_per_dispatch: int, log_every: int,
          checkpoint_every: int, checkpoints=None, writer=None, desc: str = "train"):
    """Trains from `state` (or the latest checkpoint) up to `num_steps`; returns the final state.

    With a seed axis on the state, metrics have one entry per seed; `writer` and
    `checkpoints` are then the per-seed ones of `clam_jax.training.seeds`.

    `multi_step(state, x)` runs `steps_per_dispatch` steps; `inputs(start_step)`
    returns an iterator of its `x` for the dispatches from `start_step` on (see
    `device_inputs`; a streaming loader resumes where the checkpoint left off).
    The logged `input_wait_fraction` is the share of wall time spent waiting for
    the next input: near 0 when input keeps up with training.
    """
    if checkpoints is not None and checkpoints.latest_step() is not None:
        state = checkpoints.restore(state)
    start = int(np.max(jax.device_get(state.step)))  # one step for every seed
    batches = inputs(start)
    last_time, last_step, input_wait = time.perf_counter(), start, 0.0
    since_log = []  # the dispatches' metrics since the last log, still on the device
    try:
        with tqdm.tqdm(total=num_steps, initial=start, desc=desc, unit="step", mininterval=2.0,
                       disable=jax.process_index() != 0) as bar:
            for step in range(start + steps_per_dispatch, num_steps + 1, steps_per_dispatch):
                wait_start = time.perf_counter()
                batch = next(batches)
                input_wait += time.perf_counter() - wait_start
                state, metrics = multi_step(state, batch)
                since_log.append(metrics)
                bar.update(steps_per_dispatch)
                log_now = step % log_every == 0 or step == num_steps
                save_now = checkpoints is not None and (step % checkpoint_every == 0 or step == num_steps)
                if not (log_now or save_now):
                    continue
                metrics = _interval_means(jax.device_get(since_log))
                if not np.all(np.isfinite(metrics["loss"])):
                    raise NonFiniteLossError(
                        f"{desc}: the loss became {metrics['loss']} by step {step}; the last good checkpoint "
                        "is kept, lower the learning rate or check the data for outliers before resuming.")
                if log_now and writer is not None:
                    now = time.perf_counter()
                    metrics["steps_per_s"] = (step - last_step) / (now - last_time)
                    metrics["input_wait_fraction"] = input_wait / (now - last_time)
                    last_time, last_step, input_wait = now, step, 0.0
                    since_log = []
                    writer.write(step, metrics)
                    bar.set_postfix(loss=f"{np.mean(metrics['loss']):.4g}")
                if save_now:
                    checkpoints.save(step, state)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
    return state
