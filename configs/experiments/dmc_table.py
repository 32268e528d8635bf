"""The locomotion comparison (paper Table 1) at the quick preset: normalized return per method.

  python -m clam_jax.experiments --config=configs/experiments/dmc_table.py --workdir=runs/dmc_table

Variants:
  (none)  cheetah-run and hopper-stand (SAC learns to stand, not to hop, in the quick preset's
          60k policy steps: README, "Locomotion") x seeds 0, 1, 2, every method.
"""
from pathlib import Path

import ml_collections

from clam_jax.cli import load_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    if variant not in ("", "paper_tasks"):
        raise ValueError(f"Unknown variant {variant!r}; use (none).")
    c = ml_collections.ConfigDict()
    c.variant = "paper_tasks"
    c.base = load_config(Path(__file__).resolve().parents[1] / "dmc.py", "quick")
    c.tasks = ("cheetah-run", "hopper-stand")
    c.seeds = (0, 1, 2)
    c.seeds_per_program = 1
    c.variants = {"default": ""}
    c.metric = "normalized_return"
    return c
