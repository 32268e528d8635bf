"""The generic training loop: K steps per jitted dispatch with `lax.scan`.

`step_fn(state, data) -> (state, metrics)` is pure; `data` holds device-resident
arrays that the step samples batches from with the RNG in the state, so the
host only syncs to log, check for non-finite losses, and save. Metrics a step
did not compute (e.g. the decoder loss on a reconstruction-only step) are NaN
and averaged out with nanmean; the loss itself is averaged with a plain mean, so
one non-finite step makes the whole chunk's loss non-finite.
"""
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from clam_jax.errors import NonFiniteLossError


def scan_steps(step_fn, state, data, *, length: int):
    """Runs `length` steps in one program; returns the state and per-metric chunk means."""

    def body(carry, _):
        return step_fn(carry, data)

    state, metrics = jax.lax.scan(body, state, None, length=length)
    return state, {k: jnp.mean(v) if k == "loss" else jnp.nanmean(v) for k, v in metrics.items()}


def make_multi_step(step_fn, steps_per_dispatch: int):
    return jax.jit(functools.partial(scan_steps, step_fn, length=steps_per_dispatch), donate_argnums=0)


def over_seeds(fn):
    """Maps `fn(state, data)` (a step or a scanned chunk) over a leading seed axis of the state.

    S independent runs (different init and sampling RNGs, the same data) then train
    in one program, which fills an accelerator that one small state model cannot.
    """
    return jax.vmap(fn, in_axes=(0, None))


def train(state, step_fn, data, *, num_steps: int, steps_per_dispatch: int, log_every: int,
          checkpoint_every: int, checkpoints=None, writer=None, desc: str = "train"):
    """Trains from `state` (or the latest checkpoint) up to `num_steps`; returns the final state."""
    if checkpoints is not None and checkpoints.latest_step() is not None:
        state = checkpoints.restore(state)
    start = int(state.step)
    multi_step = make_multi_step(step_fn, steps_per_dispatch)
    last_time, last_step = time.perf_counter(), start
    with tqdm.tqdm(total=num_steps, initial=start, desc=desc, unit="step", mininterval=2.0,
                   disable=jax.process_index() != 0) as bar:
        for step in range(start + steps_per_dispatch, num_steps + 1, steps_per_dispatch):
            state, metrics = multi_step(state, data)
            bar.update(steps_per_dispatch)
            log_now = step % log_every == 0 or step == num_steps
            save_now = checkpoints is not None and (step % checkpoint_every == 0 or step == num_steps)
            if not (log_now or save_now):
                continue
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if not np.isfinite(metrics["loss"]):
                raise NonFiniteLossError(
                    f"{desc}: the loss became {metrics['loss']} by step {step}; the last good checkpoint "
                    "is kept, lower the learning rate or check the data for outliers before resuming.")
            if log_now and writer is not None:
                now = time.perf_counter()
                metrics["steps_per_s"] = (step - last_step) / (now - last_time)
                last_time, last_step = now, step
                writer.write(step, {k: v for k, v in metrics.items() if np.isfinite(v)})
                bar.set_postfix(loss=f"{metrics['loss']:.4g}")
            if save_now:
                checkpoints.save(step, state)
    return state
