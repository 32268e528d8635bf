"""CLAM's design choices on assembly-v3 (paper Figure 4 a-d and Table 7) at the quick preset.

  python -m clam_jax.experiments --config=configs/experiments/metaworld_sweeps.py --workdir=runs/sweeps

Each sweep is a list of points (a label and overrides of the base config) trained
for the sweep's methods; the runner writes sweeps.md and plots/sweep_<name>_<task>.png.
Variants:
  (none)  assembly-v3 x seeds 0, 1, 2: latent dimension (4a), expert episodes (4b),
          labeled episodes (4c, with BC on them), labeled-data expertise (4d, with BC),
          decoder loss weight beta (Table 7).
  smoke   the tiny preset, one seed, two points of one sweep with BC: the runner's test.
"""
from pathlib import Path

import ml_collections

from clam_jax.cli import load_config

METAWORLD = Path(__file__).resolve().parents[1] / "metaworld.py"
PLAY = ("expert_ou0.3", "expert_ou0.5", "expert_ou1.0", "random")


def sweep(path: str, values, methods=("clam",)) -> ml_collections.ConfigDict:
    """A sweep of one config field over `values`, each point labelled by its value."""
    return ml_collections.ConfigDict(
        {"methods": methods, "points": tuple((str(v), f"{path}={v!r}") for v in values)})


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.variant = variant or "figure4"
    c.tasks = ("assembly-v3",)
    c.variants = {}
    if variant == "smoke":
        c.base = load_config(METAWORLD, "tiny")
        c.seeds = (0,)
        c.sweeps = {"labeled_episodes": sweep("data.labeled.episodes", (2, 4), methods=("bc",))}
    elif variant in ("", "figure4"):
        c.base = load_config(METAWORLD, "quick")
        c.seeds = (0, 1, 2)
        labeled = "data.labeled"
        c.sweeps = {
            "latent_dim": sweep("lam.latent_dim", (2, 4, 8, 16)),
            "expert_episodes": sweep("data.expert.episodes", (25, 50, 100, 200)),
            "labeled_episodes": sweep(f"{labeled}.episodes", (25, 50, 100, 200), methods=("clam", "bc")),
            "labeled_expertise": {"methods": ("clam", "bc"), "points": (
                ("random", f"{labeled}.behaviors=('random',)"),
                ("play", f"{labeled}.behaviors={PLAY!r}"),
                ("play+expert", f"{labeled}.behaviors={('expert',) + PLAY!r}; {labeled}.only_failures=False"),
                ("expert", f"{labeled}.behaviors=('expert',); {labeled}.only_failures=False"))},
            "beta": sweep("stage1.beta", (0.0, 0.001, 0.01, 1.0, 5.0)),
        }
    else:
        raise ValueError(f"Unknown variant {variant!r}; use one of: (none), smoke.")
    return c
