"""CALVIN's tasks (`calvin-close_drawer`, ...) behind MetaWorldTask's interface, when `calvin_env` is installed.

CALVIN (Mees et al. 2022) is not on any package registry, so clam_jax trains on
its converted play data (`clam_jax.data.calvin`) without it and needs it only to
evaluate: scene D of a CALVIN download (`calvin_dir`, whose `validation/.hydra`
configures the simulator), each episode starting from the first state of one
of the target task's annotated segments in the converted validation split
(`evaluation_options` reads them once for all environments), CALVIN's task
oracle deciding success against that start.
States are robot_obs + scene_obs (39), actions CALVIN's relative actions (7,
the gripper's sign its open/close command), each repeated `action_repeat` times.
"""
import importlib.util
from pathlib import Path

import numpy as np

from clam_jax.errors import ConfigError

PREFIX = "calvin-"
OBS_DIM, ACTION_DIM = 39, 7
TASKS = (
    "rotate_red_block_right", "rotate_red_block_left", "rotate_blue_block_right", "rotate_blue_block_left",
    "rotate_pink_block_right", "rotate_pink_block_left", "push_red_block_right", "push_red_block_left",
    "push_blue_block_right", "push_blue_block_left", "push_pink_block_right", "push_pink_block_left",
    "move_slider_left", "move_slider_right", "open_drawer", "close_drawer", "lift_red_block_table",
    "lift_red_block_slider", "lift_red_block_drawer", "lift_blue_block_table", "lift_blue_block_slider",
    "lift_blue_block_drawer", "lift_pink_block_table", "lift_pink_block_slider", "lift_pink_block_drawer",
    "place_in_slider", "place_in_drawer", "stack_block", "unstack_block", "turn_on_lightbulb",
    "turn_off_lightbulb", "turn_on_led", "turn_off_led", "push_into_drawer")
# The oracle's definition of the tasks with a joint to move (CALVIN's rollout task config): the joint and how far.
DOOR_TASKS = {"move_slider_left": ("base__slide", 0.15), "move_slider_right": ("base__slide", -0.15),
              "open_drawer": ("base__drawer", 0.12), "close_drawer": ("base__drawer", -0.12)}
MISSING = ("Evaluating in CALVIN needs its simulator, which is not on PyPI: clone github.com/mees/calvin, "
           "`pip install -e calvin_env` there, and set config.data.calvin_dir to your CALVIN download; "
           "conversion and training do not need it.")


def task_names() -> list[str]:
    return [PREFIX + task for task in TASKS]


def target_task(task: str) -> str:
    """`calvin-close_drawer` -> `close_drawer`."""
    return task.removeprefix(PREFIX)


def require_simulator() -> None:
    if importlib.util.find_spec("calvin_env") is None:
        raise ConfigError(MISSING)


def evaluation_options(config) -> dict:
    """`CalvinTask`'s options for a config (or a saved policy's config dict): the CALVIN download, and the start
    states of the target's segments in the converted validation split."""
    require_simulator()
    split = f"{config['data']['converted']}/validation"
    return {"calvin_dir": config["data"]["calvin_dir"], "starts": start_states(split, config["task"])}


def start_states(converted_split: str, task: str) -> np.ndarray:
    """The first state of each of `task`'s segments in a converted split: [K, 39]."""
    from clam_jax.data.episodes import read_episodes, read_statistics

    tasks = np.asarray(read_statistics(converted_split)["calvin"]["tasks"])
    indices = np.flatnonzero(tasks == target_task(task))
    if not len(indices):
        raise ConfigError(f"{converted_split} has no segment of {target_task(task)!r} to start episodes from.")
    return read_episodes(converted_split, indices).observations[:, 0]


class CalvinTask:
    """One CALVIN scene-D simulator; an episode starts from the one of `starts` [K, 39] its seed draws."""

    def __init__(self, task: str, *, max_steps: int, action_repeat: int, calvin_dir: str, starts: np.ndarray):
        require_simulator()
        from calvin_env.envs.play_table_env import get_env
        from calvin_env.envs.tasks import Tasks

        name = target_task(task)
        if name not in DOOR_TASKS:
            raise ConfigError(f"No success oracle for {name!r} here; evaluate one of {sorted(DOOR_TASKS)}.")
        joint, threshold = DOOR_TASKS[name]
        self._oracle = Tasks({name: ["move_door_rel", joint, threshold]})
        self._env = get_env(Path(calvin_dir) / "validation", show_gui=False)
        self._starts = starts
        self.task, self.max_steps, self.action_repeat = name, max_steps, action_repeat
        self.obs_dim, self.action_dim = OBS_DIM, ACTION_DIM
        self._steps, self._start_info = 0, None

    def _state(self) -> np.ndarray:
        obs = self._env.get_obs()
        return np.concatenate([obs["robot_obs"], obs["scene_obs"]]).astype(np.float32)

    def reset(self, variation_seed: int) -> np.ndarray:
        state = self._starts[np.random.default_rng(variation_seed).integers(len(self._starts))]
        self._env.reset(robot_obs=state[:15], scene_obs=state[15:])
        self._start_info, self._steps = self._env.get_info(), 0
        return self._state()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """Applies `action` `action_repeat` times: (state, 1.0 on success else 0.0, success)."""
        if self._steps >= self.max_steps:
            raise RuntimeError(f"episode already has {self.max_steps} steps; call reset first")
        command = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        command[6] = 1.0 if command[6] >= 0 else -1.0
        for _ in range(self.action_repeat):
            _, _, _, info = self._env.step(command)
        self._steps += 1
        success = bool(self._oracle.get_task_info_for_set(self._start_info, info, {self.task}))
        return self._state(), float(success), success

    def render(self, width: int = 64, height: int = 64) -> np.ndarray:
        """The static camera's frame, resized (square: `width` x `width`)."""
        from clam_jax.data.calvin import resize

        del height
        return resize(self._env.get_obs()["rgb_obs"]["rgb_static"], width)

    def close(self) -> None:
        self._env.close()
