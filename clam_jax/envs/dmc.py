"""dm_control suite tasks (`hopper-hop`, `cheetah-run`, any `<domain>-<task>`) behind MetaWorldTask's interface.

Observations are the task's observation dict flattened in its own key order
(hopper: position 6, velocity 7, touch 2 = 15; cheetah: 17), actions lie in
[-1, 1] (every suite task's bounds), and one policy step repeats its action for
`action_repeat` physics control steps, so the suite's 1000-step episodes become
`1000 / action_repeat` policy steps (the paper: action repeat 2). Locomotion has
no success: `step` reports False and methods are compared by return.
"""
import numpy as np

from clam_jax.envs.fixed_length import FixedLengthTask, check_unit_bounds
from clam_jax.errors import ConfigError

SUITE_EPISODE_STEPS = 1000  # control steps in every suite episode (its 20 s or 25 s time limit)


def task_names() -> list[str]:
    from dm_control import suite

    return sorted(f"{domain}-{task}" for domain, task in suite.ALL_TASKS)


def check_task(task: str) -> tuple[str, str]:
    """`<domain>-<task>` -> (domain, task), or a ConfigError naming the tasks of that domain."""
    names = task_names()
    if task not in names:
        domain = task.split("-", 1)[0]
        close = [n for n in names if n.startswith(domain + "-")] or names[:6]
        raise ConfigError(f"Unknown dm_control task {task!r}; use <domain>-<task>, e.g. {', '.join(close)}.")
    domain, name = task.split("-", 1)
    return domain, name


class DMControlTask(FixedLengthTask):
    """One dm_control environment; each episode starts from the initial state drawn by its seed."""

    def __init__(self, task: str, *, max_steps: int | None = None, action_repeat: int = 2):
        from dm_control import suite

        domain, name = check_task(task)
        super().__init__(task, episode_steps=SUITE_EPISODE_STEPS, max_steps=max_steps, action_repeat=action_repeat)
        self._env = suite.load(domain, name, task_kwargs={"random": 0})
        spec = self._env.action_spec()
        check_unit_bounds(task, spec.minimum, spec.maximum)
        self.action_dim = int(spec.shape[0])
        self.obs_dim = int(sum(np.prod(s.shape, dtype=int) for s in self._env.observation_spec().values()))

    @staticmethod
    def _flat(observation) -> np.ndarray:
        return np.concatenate([np.ravel(v) for v in observation.values()]).astype(np.float32)

    def reset(self, variation_seed: int) -> np.ndarray:
        """Starts an episode from the initial state that `variation_seed` draws."""
        self._env.task._random = np.random.RandomState(variation_seed)  # the suite's per-episode randomness
        self._steps = 0
        return self._flat(self._env.reset().observation)

    def _simulate(self, action: np.ndarray) -> tuple[np.ndarray, float]:
        timestep = self._env.step(action)
        return self._flat(timestep.observation), float(timestep.reward or 0.0)

    def render(self, width: int = 64, height: int = 64) -> np.ndarray:
        """An RGB frame [height, width, 3] uint8 of the task's first camera (needs a MuJoCo GL backend,
        e.g. MUJOCO_GL=egl)."""
        return self._env.physics.render(height=height, width=width, camera_id=0)

    def close(self) -> None:
        self._env.close()
