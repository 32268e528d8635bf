"""Gymnasium's MuJoCo locomotion tasks (`Hopper-v5`, `HalfCheetah-v5`: the paper's Table 1, the robots of D4RL)
behind MetaWorldTask's interface.

As the paper's Appendix E has them: episodes of a fixed 1000 simulator steps with
no termination (a fallen hopper stays in the episode, earning no healthy
reward), one policy step repeating its action for `action_repeat` steps (the
paper: 2, so 500 policy steps), observations the task's own vector (hopper 11,
cheetah 17), actions in [-1, 1]. Locomotion has no success: `step` reports False
and methods are compared by return.
"""
import functools
import inspect

import numpy as np

from clam_jax.envs.fixed_length import FixedLengthTask, check_unit_bounds
from clam_jax.errors import ConfigError

EPISODE_STEPS = 1000  # simulator steps in every episode (the tasks' own time limit)


@functools.cache
def task_names() -> list[str]:
    """The newest version of each of gymnasium's MuJoCo tasks, e.g. `Hopper-v5`."""
    import gymnasium

    newest = {}
    for name, spec in gymnasium.registry.items():
        if isinstance(spec.entry_point, str) and spec.entry_point.startswith("gymnasium.envs.mujoco"):
            newest[spec.name] = max(newest.get(spec.name, 0), spec.version or 0)
    return sorted(f"{name}-v{version}" for name, version in newest.items())


class GymMuJoCoTask(FixedLengthTask):
    """One gymnasium MuJoCo environment; each episode starts from the initial state drawn by its seed."""

    def __init__(self, task: str, *, max_steps: int | None = None, action_repeat: int = 2):
        import gymnasium

        if task not in task_names():
            raise ConfigError(f"Unknown gymnasium MuJoCo task {task!r}; use one of {', '.join(task_names())}.")
        super().__init__(task, episode_steps=EPISODE_STEPS, max_steps=max_steps, action_repeat=action_repeat)
        env_class = gymnasium.envs.registration.load_env_creator(gymnasium.spec(task).entry_point)
        never_terminate = ({"terminate_when_unhealthy": False}
                           if "terminate_when_unhealthy" in inspect.signature(env_class).parameters else {})
        self._env = gymnasium.make(task, **never_terminate).unwrapped  # no time limit: max_steps is ours
        check_unit_bounds(task, self._env.action_space.low, self._env.action_space.high)
        self.action_dim = int(self._env.action_space.shape[0])
        self.obs_dim = int(self._env.observation_space.shape[0])
        self._renderer = None

    def reset(self, variation_seed: int) -> np.ndarray:
        """Starts an episode from the initial state that `variation_seed` draws."""
        self._steps = 0
        observation, _ = self._env.reset(seed=int(variation_seed))
        return observation.astype(np.float32)

    def _simulate(self, action: np.ndarray) -> tuple[np.ndarray, float]:
        observation, reward, terminated, _, _ = self._env.step(action)
        if terminated:  # only tasks that cannot be told not to terminate (none of the locomotion ones)
            raise RuntimeError(f"{self.task} terminated its episode; it has no fixed-length form.")
        return observation.astype(np.float32), float(reward)

    def render(self, width: int = 64, height: int = 64) -> np.ndarray:
        """An RGB frame [height, width, 3] uint8 of the task's first camera (needs a MuJoCo GL backend,
        e.g. MUJOCO_GL=egl)."""
        import mujoco

        model, data = self._env.model, self._env.data
        if self._renderer is None or (self._renderer.width, self._renderer.height) != (width, height):
            self._renderer = mujoco.Renderer(model, height=height, width=width)
        self._renderer.update_scene(data, camera=0 if model.ncam else -1)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
        self._env.close()
