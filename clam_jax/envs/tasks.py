"""One name space for every task: MetaWorld v3 (`assembly-v3`), the dm_control suite (`cheetah-run`), gymnasium's
MuJoCo locomotion (`Hopper-v5`) and CALVIN (`calvin-close_drawer`, trained on converted play data:
`clam_jax.data.calvin`).

The task name alone decides the simulator, the observation and action sizes
and the environment class, so configs never restate them.
"""
import functools

from clam_jax.envs import calvin, dmc, gym_mujoco, metaworld
from clam_jax.errors import ConfigError


# Suites whose data comes from a SAC agent learning the task (`clam_jax.envs.locomotion`), compared by return.
LOCOMOTION_SUITES = ("dmc", "gym")


def suite_of(task: str) -> str:
    """"metaworld", "dmc", "gym" or "calvin"; a ConfigError naming similar tasks for any other name."""
    if task in metaworld.task_names():
        return "metaworld"
    if task in dmc.task_names():
        return "dmc"
    if task in gym_mujoco.task_names():
        return "gym"
    if task in calvin.task_names():
        return "calvin"
    names = metaworld.task_names() + dmc.task_names() + gym_mujoco.task_names() + calvin.task_names()
    close = [n for n in names if n.startswith(task.split("-")[0])][:6] or ["assembly-v3", "cheetah-run", "Hopper-v5"]
    raise ConfigError(f"Unknown task {task!r}; use a MetaWorld v3 task, a dm_control <domain>-<task>, a gymnasium "
                      f"MuJoCo task or a calvin-<task>, e.g. {', '.join(close)}.")


def make_task(task: str, *, max_steps: int | None, action_repeat: int, **options):
    """The environment of `task` with MetaWorldTask's interface: reset(seed), step(action), render(), close();
    `options` are the suite's own (`task_options`)."""
    classes = {"metaworld": metaworld.MetaWorldTask, "dmc": dmc.DMControlTask, "gym": gym_mujoco.GymMuJoCoTask,
               "calvin": calvin.CalvinTask}
    return classes[suite_of(task)](task, max_steps=max_steps, action_repeat=action_repeat, **options)


def task_options(config) -> dict:
    """What a suite's environments need beyond the task (a config, or a saved policy's config dict): for
    CALVIN, its download and the start states of its episodes (`calvin.evaluation_options`)."""
    return calvin.evaluation_options(config) if suite_of(config["task"]) == "calvin" else {}


def require_simulator(task: str) -> None:
    """A ConfigError saying what to install when `task`'s simulator is not (CALVIN's is not on PyPI)."""
    if suite_of(task) == "calvin":
        calvin.require_simulator()


@functools.cache
def task_dims(task: str) -> tuple[int, int]:
    """(observation size, action size) of `task`'s state vectors."""
    if suite_of(task) == "metaworld":
        return metaworld.OBS_DIM, metaworld.ACTION_DIM
    if suite_of(task) == "calvin":
        return calvin.OBS_DIM, calvin.ACTION_DIM
    env = make_task(task, max_steps=None, action_repeat=1)
    dims = env.obs_dim, env.action_dim
    env.close()
    return dims


def proprio_dims(task: str) -> int:
    """How many leading entries of `task`'s state vector are the arm's proprioception (MetaWorld: the hand's
    position and the gripper's opening)."""
    if suite_of(task) != "metaworld":
        raise ConfigError(f"{task} has no proprioceptive state apart from its state vector; "
                          "config.proprio needs a MetaWorld task.")
    return metaworld.PROPRIO_DIM
