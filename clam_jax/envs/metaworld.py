"""MetaWorld v3 tasks as fixed-length episodes with action repeat.

One policy step repeats the action for `action_repeat` simulator steps; an
episode succeeds if `info["success"]` is true at any simulator sub-step. Each
episode gets its own task variation (object and goal placement) drawn from a
seed, so data and evaluation can use disjoint, reproducible variations without
paying for a new environment (~1.2 s) per episode.
"""
import pickle

import numpy as np

from clam_jax.errors import ConfigError

OBS_DIM = 39
ACTION_DIM = 4
PROPRIO_DIM = 4  # observation[:4]: the hand's xyz position and the gripper's opening


def task_names() -> list[str]:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return sorted(ALL_V3_ENVIRONMENTS)


def check_task(task: str) -> None:
    names = task_names()
    if task not in names:
        close = [n for n in names if task.split("-")[0] in n][:5] or names[:5]
        raise ConfigError(
            f"Unknown MetaWorld task {task!r}; use a v3 task name such as {', '.join(close)} "
            f"({len(names)} tasks in total)."
        )


class MetaWorldTask:
    """One MetaWorld environment, reset to a seeded task variation per episode."""

    obs_dim = OBS_DIM
    action_dim = ACTION_DIM

    def __init__(self, task: str, *, max_steps: int = 100, action_repeat: int = 2):
        check_task(task)
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        self.task = task
        self.max_steps = max_steps
        self.action_repeat = action_repeat
        self._env = ALL_V3_ENVIRONMENTS[task]()
        self._env.max_path_length = max_steps * action_repeat
        self._steps = 0
        self._renderers = {}

    def reset(self, variation_seed: int) -> np.ndarray:
        """Starts an episode in the task variation named by `variation_seed`."""
        from metaworld.types import Task

        space = self._env._random_reset_space
        rand_vec = np.random.default_rng(variation_seed).uniform(space.low, space.high)
        data = {"env_cls": type(self._env), "rand_vec": rand_vec, "partially_observable": False}
        self._env.set_task(Task(env_name=self.task, data=pickle.dumps(data)))
        obs, _ = self._env.reset()
        self._steps = 0
        return obs.astype(np.float32)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """Applies `action` for `action_repeat` sub-steps: (obs, summed reward, success at any sub-step)."""
        if self._steps >= self.max_steps:
            raise RuntimeError(f"episode already has {self.max_steps} steps; call reset first")
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        reward, success = 0.0, False
        for _ in range(self.action_repeat):
            obs, r, _, _, info = self._env.step(action)
            reward += float(r)
            success |= bool(info["success"])
        self._steps += 1
        return obs.astype(np.float32), reward, success

    def render(self, width: int = 128, height: int = 128) -> np.ndarray:
        """An RGB frame [height, width, 3] uint8 of the corner camera, right side up (needs a MuJoCo GL
        backend, e.g. MUJOCO_GL=egl). Shadows and reflections are off: ~4x faster on a software renderer."""
        import mujoco

        renderer = self._renderers.get((width, height))
        if renderer is None:
            renderer = self._renderers[width, height] = mujoco.Renderer(self._env.model, height=height, width=width)
            for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION):
                renderer.scene.flags[flag] = False
        renderer.update_scene(self._env.data, camera="corner")
        return renderer.render()[::-1].copy()  # the corner camera renders upside down

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
        self._env.close()


def expert_policy(task: str):
    """The scripted MetaWorld expert for `task`: a callable obs -> action."""
    from metaworld.policies import ENV_POLICY_MAP

    return ENV_POLICY_MAP[task]().get_action
