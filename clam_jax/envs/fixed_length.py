"""What the locomotion simulators share: episodes of a fixed length, each policy step repeating its action."""
import numpy as np

from clam_jax.errors import ConfigError


class FixedLengthTask:
    """Episodes of `episode_steps // action_repeat` policy steps (fewer with `max_steps`), no termination, actions
    clipped to [-1, 1]; a simulator subclass sets `_env`, `obs_dim`, `action_dim` and implements `reset` and
    `_simulate(action) -> (observation, reward)`, one simulator step."""

    def __init__(self, task: str, *, episode_steps: int, max_steps: int | None, action_repeat: int):
        self.task = task
        self.action_repeat = action_repeat
        limit = episode_steps // action_repeat
        self.max_steps = limit if max_steps is None else max_steps
        if not 0 < self.max_steps <= limit:
            raise ConfigError(f"{task}: max_steps must be in 1..{limit} ({episode_steps} simulator steps at action "
                              f"repeat {action_repeat}), got {self.max_steps}.")
        self._steps = 0

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """Applies `action` for `action_repeat` simulator steps: (obs, summed reward, False: no success)."""
        if self._steps >= self.max_steps:
            raise RuntimeError(f"episode already has {self.max_steps} steps; call reset first")
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        reward = 0.0
        for _ in range(self.action_repeat):
            observation, step_reward = self._simulate(action)
            reward += step_reward
        self._steps += 1
        return observation, reward, False

    def _simulate(self, action: np.ndarray) -> tuple[np.ndarray, float]:
        raise NotImplementedError


def check_unit_bounds(task: str, low: np.ndarray, high: np.ndarray) -> None:
    """A ConfigError unless every action dimension is bounded by [-1, 1] (what the policies' tanh outputs cover)."""
    if not (np.all(low == -1) and np.all(high == 1)):
        raise ConfigError(f"{task}: actions are bounded by {low}..{high}, not [-1, 1].")
