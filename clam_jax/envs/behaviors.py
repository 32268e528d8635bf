"""Behaviour policies that generate the datasets.

A behaviour is named by a short string so a config can list a mixture:

- `expert`: the scripted MetaWorld expert.
- `expert_noise{std}`: the expert with i.i.d. Gaussian noise of that std on every action.
- `expert_ou{std}`: the expert with temporally correlated (Ornstein-Uhlenbeck)
  noise of that stationary std: smooth deviations, like a shaky operator.
- `expert_offset{scale}`: the expert acting on a displaced world: the object and
  goal positions it sees are shifted by one random offset per episode (uniform
  in [-scale, scale] metres), so it moves purposefully but to the wrong places:
  task-adjacent play that mostly fails.
- `random`: uniform actions in [-1, 1].
"""
import re
from typing import Callable

import numpy as np

from clam_jax.envs.metaworld import ACTION_DIM, OBS_DIM, expert_policy
from clam_jax.errors import ConfigError

_PARAMETRIC = re.compile(r"^expert_(noise|ou|offset)(\d+(?:\.\d+)?)$")
_OU_THETA = 0.15
# Where the first object's position (current and previous frame) and the goal sit in the 39-D state.
_OBJECT_AND_GOAL = np.r_[4:7, 22:25, 36:39]


def check_behavior(name: str) -> None:
    if name not in ("expert", "random") and not _PARAMETRIC.match(name):
        raise ConfigError(
            f"Unknown behaviour {name!r}; use 'expert', 'random', or 'expert_noise<std>', 'expert_ou<std>', "
            "'expert_offset<metres>' such as 'expert_noise0.5'.")


def make_behavior(name: str, task: str, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """Returns a stateful obs -> action in [-1, 1] for one episode of behaviour `name`, drawing from `rng`."""
    check_behavior(name)
    if name == "random":
        return lambda obs: rng.uniform(-1.0, 1.0, ACTION_DIM).astype(np.float32)
    expert = expert_policy(task)
    kind, value = ("noise", 0.0) if name == "expert" else _PARAMETRIC.match(name).groups()
    value = float(value)
    offset = np.zeros(OBS_DIM, np.float32)
    if kind == "offset":
        offset[_OBJECT_AND_GOAL] = np.tile(rng.uniform(-value, value, 3), 3)
    ou = np.zeros(ACTION_DIM)

    def act(obs):
        nonlocal ou
        action = np.clip(expert(obs + offset), -1.0, 1.0)
        if kind == "noise" and value > 0:
            action = action + value * rng.standard_normal(ACTION_DIM)
        elif kind == "ou":
            ou = ou - _OU_THETA * ou + value * np.sqrt(2 * _OU_THETA) * rng.standard_normal(ACTION_DIM)
            action = action + ou
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    return act
