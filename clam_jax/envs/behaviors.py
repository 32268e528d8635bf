"""Behaviour policies that generate the datasets: the scripted expert with noise, and random actions.

A behaviour is named by a short string, `expert`, `expert_noise{std}` (Gaussian
noise of that std added to every clipped expert action), or `random` (uniform
in [-1, 1]), so a config can list a mixture as plain strings.
"""
import re
from typing import Callable

import numpy as np

from clam_jax.envs.metaworld import ACTION_DIM, expert_policy
from clam_jax.errors import ConfigError

_NOISY = re.compile(r"^expert_noise(\d+(?:\.\d+)?)$")


def check_behavior(name: str) -> None:
    if name not in ("expert", "random") and not _NOISY.match(name):
        raise ConfigError(
            f"Unknown behaviour {name!r}; use 'expert', 'random' or 'expert_noise<std>' such as 'expert_noise0.5'."
        )


def make_behavior(name: str, task: str, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """Returns obs -> action in [-1, 1] for behaviour `name`, drawing noise from `rng`."""
    check_behavior(name)
    if name == "random":
        return lambda obs: rng.uniform(-1.0, 1.0, ACTION_DIM).astype(np.float32)
    expert = expert_policy(task)
    std = 0.0 if name == "expert" else float(_NOISY.match(name).group(1))

    def act(obs):
        action = np.clip(expert(obs), -1.0, 1.0)
        if std > 0:
            action = action + std * rng.standard_normal(ACTION_DIM)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    return act
