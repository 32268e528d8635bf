"""CLAM on locomotion (paper Table 1): data from the replay buffer of a SAC agent learning the task.

`--config.task` takes any dm_control suite task as <domain>-<task> (`cheetah-run`,
`walker-walk`, `hopper-hop`) or a gymnasium MuJoCo task (`Hopper-v5`, `HalfCheetah-v5`:
the paper's robots, those of D4RL). Episodes are 1000 simulator steps at action repeat
2 (500 policy steps), with no termination. The models, stages and methods are those of
configs/metaworld.py at the same variant.

Variants, chosen with `--config=configs/dmc.py:<variant>`:
  (none)  paper scale: SAC for 1M policy steps, the buffer up to half the final
          return as D_unlabeled; configs/metaworld.py's models and step counts. GPU work.
  quick   one task on a 2-core CPU in about an hour: a shorter SAC run and the
          metaworld quick preset's models and steps.
  tiny    a smoke test of the whole pipeline for the test suite.
"""
from pathlib import Path

import ml_collections

from clam_jax.cli import load_config

METAWORLD = Path(__file__).with_name("metaworld.py")


def get_config(variant: str = ""):
    c = load_config(METAWORLD, variant)  # refuses unknown variants
    c.variant = f"dmc_{variant or 'paper'}"
    c.task = "cheetah-run"
    c.max_steps = 500  # 1000 simulator steps at action repeat 2
    c.action_repeat = 2
    c.methods = ("clam", "bc", "bc_expert", "vpt", "lapo", "lapa", "dynamo")

    # The data agent (clam_jax.envs.sac): SAC trained online on the task, its buffer kept as episodes.
    c.agent = ml_collections.ConfigDict(dict(
        episodes=2000, random_steps=10_000, updates_per_step=1, batch_size=256, hidden=(256, 256), lr=3e-4,
        discount=0.99, tau=0.005, init_temperature=0.1, checkpoint_every=10))
    # D_unlabeled: the buffer up to the first episode at `medium_fraction` of the final agent's return;
    # D_labeled: the buffer's first episodes; D_unlabeled_expert: rollouts of the final agent's mean action.
    # `reference_episodes` of uniform random actions give the normalized return's random score.
    c.data = ml_collections.ConfigDict(dict(
        medium_fraction=0.5, labeled=dict(episodes=20), expert=dict(episodes=100), reference_episodes=10))
    if variant == "quick":
        c.agent.episodes = 120
        c.agent.random_steps = 5_000
        c.data.labeled.episodes = 10
        c.data.expert.episodes = 40
    elif variant == "tiny":
        c.max_steps = 20
        c.agent.update(episodes=8, random_steps=60, batch_size=32, hidden=(32, 32), checkpoint_every=4)
        c.data.update(medium_fraction=100.0, labeled=dict(episodes=3), expert=dict(episodes=4), reference_episodes=2)
    return c
