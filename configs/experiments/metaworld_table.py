"""The MetaWorld comparison (paper Table 5) and the joint/separate ablation (Table 6) at the quick preset.

  python -m clam_jax.experiments --config=configs/experiments/metaworld_table.py --workdir=runs/table

Variants:
  (none)  the paper's four tasks x seeds 0, 1, 2; every method, plus the ablation cells of CLAM
          (decoder trained after the LAM; discrete latents trained jointly; LAPO is discrete and
          separate) and TF-CLAM (the transformer LAM, Table 5's other CLAM row). Written to table.md
          (Table 5's layout) and ablation.md (Table 6's).
  differences  the same tasks and seeds, CLAM, BC, BC-Expert, VPT and LAPO with `lam.difference_scale=10` (the IDMs
          also read the window's frame-to-frame differences; chosen on the `val` variations, README "Sharper
          labels").
  smoke   the tiny preset, one task, two seeds trained together, BC and CLAM-separate only: the
          runner's test.
"""
from pathlib import Path

import ml_collections

from clam_jax.cli import load_config


def base_config(variant: str) -> ml_collections.ConfigDict:
    """A preset of configs/metaworld.py."""
    return load_config(Path(__file__).resolve().parents[1] / "metaworld.py", variant)


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.variant = variant or "paper_tasks"
    if variant == "smoke":
        c.base = base_config("tiny")
        c.base.methods = ("bc",)
        c.tasks = ("assembly-v3",)
        c.seeds = (0, 1)
        c.seeds_per_program = 2
    elif variant in ("", "paper_tasks", "differences"):
        c.base = base_config("quick")
        c.tasks = ("assembly-v3", "bin-picking-v3", "peg-insert-side-v3", "shelf-place-v3")
        c.seeds = (0, 1, 2)
        # Seeds of a task trained together in one program: 3 on an accelerator; on a 2-core CPU one
        # at a time is as fast (README, "Performance").
        c.seeds_per_program = 1
    else:
        raise ValueError(f"Unknown variant {variant!r}; use one of: (none), differences, smoke.")
    if variant == "differences":
        c.base.lam.difference_scale = 10.0
        c.base.methods = ("clam", "bc", "bc_expert", "vpt", "lapo")
        c.variants = {"differences": ""}  # named for `clam_jax.selection` beside the frames-only grid
        return c
    # Variant name -> overrides of the base config ("path=value; ..."); "default" is the base itself.
    # With the default, the four cells of the paper's Table 6 (continuous/discrete x joint/separate);
    # discrete + separate is LAPO's recipe, so the `lapo` method fills that cell.
    c.variants = {"default": "", "separate": "stage1.joint=False; methods=('clam',)"}
    if variant != "smoke":
        c.variants.discrete = "lam.codebook_size=64; lam.latent_dim=128; methods=('clam',)"
        c.variants.transformer = "lam.kind='transformer'; methods=('clam',)"
    c.ablation_rows = {"continuous, joint (CLAM)": "clam", "continuous, separate": "clam (separate)",
                       "discrete, joint": "clam (discrete)", "discrete, separate (LAPO)": "lapo"}
    return c
