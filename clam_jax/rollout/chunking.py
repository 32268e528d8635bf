"""Action chunking (paper Appendix F, after ACT, Zhao et al. 2023): policies that predict the next `chunk` steps.

Training: the target of step t is the chunk of the episode's targets (actions,
or latent actions) at t .. t + chunk - 1, with a mask that drops the steps past
the episode's end. Acting: `ChunkedActor` turns a chunk function into one
action per step, either by temporal ensembling (the policy is queried every
step; the action executed at t is the weighted mean of every prediction made
for t, weight exp(-m * i) with i = 0 for the oldest, so a larger m trusts older
predictions more) or open loop (queried every `chunk` steps, its chunk executed
in order).
"""
import numpy as np

from clam_jax.errors import ConfigError

EXECUTIONS = ("ensemble", "open_loop")


def chunk_targets(targets: np.ndarray, chunk: int) -> dict:
    """Per-episode targets [N, T, D] -> {"targets": [N * T, chunk, D], "mask": [N * T, chunk]} in the (episode, t)
    order of `clam_jax.stages.transition_observations`; steps past an episode's end are zeros, masked out."""
    n, steps, dim = targets.shape
    padded = np.concatenate([targets, np.zeros((n, chunk - 1, dim), targets.dtype)], axis=1)
    index = np.arange(steps)[:, None] + np.arange(chunk)[None]
    mask = np.broadcast_to(index < steps, (n, steps, chunk))
    return {"targets": padded[:, index].reshape(n * steps, chunk, dim),
            "mask": mask.reshape(n * steps, chunk).astype(np.float32)}


class ChunkedActor:
    """`actor(observations [N, ...]) -> actions [N, A]`, one call per step of N episodes run in lockstep, from a
    policy's `act_chunk(observations) -> [N, chunk, A]`; `reset()` before the episodes start."""

    def __init__(self, act_chunk, chunk: int, *, execution: str = "ensemble", ensemble_m: float = 0.5):
        if execution not in EXECUTIONS:
            raise ConfigError(f"Unknown chunk execution {execution!r}; use one of {EXECUTIONS}.")
        if ensemble_m < 0:
            raise ConfigError(f"The temporal ensembling weight m must be >= 0, got {ensemble_m}.")
        self.act_chunk, self.chunk, self.execution, self.ensemble_m = act_chunk, chunk, execution, ensemble_m
        self.reset()

    def reset(self) -> None:
        self._recent = []  # the chunks predicted at the last min(t + 1, chunk) steps, newest first
        self._t = 0

    def __call__(self, observations) -> np.ndarray:
        if self.chunk == 1:
            return np.asarray(self.act_chunk(observations))[:, 0]
        if self.execution == "open_loop":
            if self._t % self.chunk == 0:
                self._recent = [np.asarray(self.act_chunk(observations))]
            action = self._recent[0][:, self._t % self.chunk]
        else:
            self._recent = [np.asarray(self.act_chunk(observations)), *self._recent][: self.chunk]
            # The prediction made i steps ago for this step is entry i of that chunk; the oldest weighs most.
            predictions = np.stack([chunk[:, age] for age, chunk in enumerate(self._recent)])[::-1]
            weights = np.exp(-self.ensemble_m * np.arange(len(predictions)))
            action = np.tensordot(weights / weights.sum(), predictions, axes=1).astype(predictions.dtype)
        self._t += 1
        return action


def start_episodes(act) -> None:
    """Resets a policy with memory across steps (`ChunkedActor`) before new episodes; plain functions have none."""
    reset = getattr(act, "reset", None)
    if reset is not None:
        reset()
