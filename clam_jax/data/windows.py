"""Stage-1 windows and their action labels, cut from padded episodes on the device.

Episodes are padded once: `context` copies of the first observation in front
and `future` copies of the last one behind, so every transition t in 0..T-1
has a full window `padded[t : t + window]` = o[t-H .. t+1+F], whose current
frame o_t sits at index `context` and whose target o_{t+1} at `context + 1`;
its action label is `actions[t]`. Windows never cross episode boundaries.
Observations may be a dict of arrays (`clam_jax.data.observations`): every
function here maps over its leaves.
"""
import jax
import jax.numpy as jnp
import numpy as np

from clam_jax.data.observations import first_leaf


def pad_episodes(observations, context: int, future: int):
    """[N, T + 1, D] -> [N, context + T + 1 + future, D]."""

    def pad(x):
        return np.concatenate([np.repeat(x[:, :1], context, axis=1), x, np.repeat(x[:, -1:], future, axis=1)],
                              axis=1)

    return jax.tree.map(pad, observations)


def window_length(context: int, future: int) -> int:
    return context + 2 + future


def idm_inputs(windows, difference_scale: float = 0.0):
    """State windows [B, W, D] flattened for an MLP IDM: [B, W * D]; with `difference_scale` > 0 followed by the
    frame-to-frame differences times it, [B, (2W - 1) * D]. z-scored states move by 0.04-0.16 of their spread
    per step (MetaWorld), so an MLP over the frames alone reads a step's action blurred with its neighbours'
    (README, "Sharper labels"); the scaled differences make each step's motion as large as the frames."""
    flat = windows.reshape(windows.shape[0], -1)
    if not difference_scale:
        return flat
    differences = difference_scale * (windows[:, 1:] - windows[:, :-1])
    return jnp.concatenate([flat, differences.reshape(windows.shape[0], -1)], axis=-1)


def num_transitions(padded, window: int) -> int:
    return first_leaf(padded).shape[1] - window + 1


def gather_windows(padded, episode: jax.Array, t: jax.Array, window: int):
    """Windows of transitions (episode[i], t[i]): [B, window, D]."""
    steps = t[:, None] + jnp.arange(window)[None]
    return jax.tree.map(lambda x: x[episode[:, None], steps], padded)


def sample_windows(key: jax.Array, padded, batch_size: int, window: int):
    """Uniformly samples transitions; returns (windows [B, window, D], episode [B], t [B])."""
    k_ep, k_t = jax.random.split(key)
    episode = jax.random.randint(k_ep, (batch_size,), 0, first_leaf(padded).shape[0])
    t = jax.random.randint(k_t, (batch_size,), 0, num_transitions(padded, window))
    return gather_windows(padded, episode, t, window), episode, t


def all_windows(padded, window: int):
    """Every transition's window in (episode, t) order: [N * T, window, D]."""
    n, steps = first_leaf(padded).shape[0], num_transitions(padded, window)
    episode = jnp.repeat(jnp.arange(n), steps)
    t = jnp.tile(jnp.arange(steps), n)
    return gather_windows(padded, episode, t, window)
