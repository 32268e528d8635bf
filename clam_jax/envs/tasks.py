"""One name space for every task: MetaWorld v3 (`assembly-v3`) and the dm_control suite (`cheetah-run`).

The task name alone decides the simulator, the observation and action sizes
and the environment class, so configs never restate them.
"""
import functools

from clam_jax.envs import dmc, metaworld
from clam_jax.errors import ConfigError


def suite_of(task: str) -> str:
    """"metaworld" or "dmc"; a ConfigError naming similar tasks of both for any other name."""
    if task in metaworld.task_names():
        return "metaworld"
    if task in dmc.task_names():
        return "dmc"
    names = metaworld.task_names() + dmc.task_names()
    close = [n for n in names if n.startswith(task.split("-")[0])][:6] or ["assembly-v3", "cheetah-run", "hopper-hop"]
    raise ConfigError(f"Unknown task {task!r}; use a MetaWorld v3 task or a dm_control <domain>-<task>, "
                      f"e.g. {', '.join(close)}.")


def make_task(task: str, *, max_steps: int, action_repeat: int):
    """The environment of `task` with MetaWorldTask's interface: reset(seed), step(action), render(), close()."""
    cls = metaworld.MetaWorldTask if suite_of(task) == "metaworld" else dmc.DMControlTask
    return cls(task, max_steps=max_steps, action_repeat=action_repeat)


@functools.cache
def task_dims(task: str) -> tuple[int, int]:
    """(observation size, action size) of `task`'s state vectors."""
    if suite_of(task) == "metaworld":
        return metaworld.OBS_DIM, metaworld.ACTION_DIM
    env = dmc.DMControlTask(task)
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
