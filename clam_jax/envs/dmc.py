"""dm_control suite tasks (`hopper-hop`, `cheetah-run`, any `<domain>-<task>`) behind MetaWorldTask's interface.

Observations are the task's observation dict flattened in its own key order
(hopper: position 6, velocity 7, touch 2 = 15; cheetah: 17), actions lie in
[-1, 1] (every suite task's bounds), and one policy step repeats its action for
`action_repeat` physics control steps, so the suite's 1000-step episodes become
`1000 / action_repeat` policy steps (the paper: action repeat 2). Locomotion has
no success: `step` reports False and methods are compared by return.
"""
import numpy as np

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


class DMControlTask:
    """One dm_control environment; each episode starts from the initial state drawn by its seed."""

    def __init__(self, task: str, *, max_steps: int | None = None, action_repeat: int = 2):
        from dm_control import suite

        domain, name = check_task(task)
        self.task = task
        self.action_repeat = action_repeat
        limit = SUITE_EPISODE_STEPS // action_repeat
        self.max_steps = limit if max_steps is None else max_steps
        if not 0 < self.max_steps <= limit:
            raise ConfigError(f"{task}: max_steps must be in 1..{limit} (the suite's {SUITE_EPISODE_STEPS} control "
                              f"steps at action repeat {action_repeat}), got {self.max_steps}.")
        self._env = suite.load(domain, name, task_kwargs={"random": 0})
        spec = self._env.action_spec()
        if not (np.all(spec.minimum == -1) and np.all(spec.maximum == 1)):
            raise ConfigError(f"{task}: actions are bounded by {spec.minimum}..{spec.maximum}, not [-1, 1].")
        self.action_dim = int(spec.shape[0])
        self.obs_dim = int(sum(np.prod(s.shape, dtype=int) for s in self._env.observation_spec().values()))
        self._steps = 0

    @staticmethod
    def _flat(observation) -> np.ndarray:
        return np.concatenate([np.ravel(v) for v in observation.values()]).astype(np.float32)

    def reset(self, variation_seed: int) -> np.ndarray:
        """Starts an episode from the initial state that `variation_seed` draws."""
        self._env.task._random = np.random.RandomState(variation_seed)  # the suite's per-episode randomness
        self._steps = 0
        return self._flat(self._env.reset().observation)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """Applies `action` for `action_repeat` control steps: (obs, summed reward, False)."""
        if self._steps >= self.max_steps:
            raise RuntimeError(f"episode already has {self.max_steps} steps; call reset first")
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        reward = 0.0
        for _ in range(self.action_repeat):
            timestep = self._env.step(action)
            reward += float(timestep.reward or 0.0)
        self._steps += 1
        return self._flat(timestep.observation), reward, False

    def render(self, width: int = 64, height: int = 64) -> np.ndarray:
        """An RGB frame [height, width, 3] uint8 of the task's first camera (needs a MuJoCo GL backend,
        e.g. MUJOCO_GL=egl)."""
        return self._env.physics.render(height=height, width=width, camera_id=0)

    def close(self) -> None:
        self._env.close()
