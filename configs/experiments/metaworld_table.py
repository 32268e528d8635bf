"""The MetaWorld comparison (paper Table 5) and the joint/separate ablation (Table 6) at the quick preset.

  python -m clam_jax.experiments --config=configs/experiments/metaworld_table.py --workdir=runs/table

Variants:
  (none)  the paper's four tasks x seeds 0, 1, 2; every method, plus the ablation cells of CLAM
          (decoder trained after the LAM; discrete latents, joint or separate). About 4 min per task
          and seed for the methods and 2.5 min per ablation cell on a 2-core CPU: about 2.5 h in all.
  smoke   the tiny preset, one task, two seeds, BC and CLAM-separate only: the runner's test.
"""
import importlib.util
from pathlib import Path

import ml_collections


def base_config(variant: str) -> ml_collections.ConfigDict:
    path = Path(__file__).resolve().parents[1] / "metaworld.py"
    spec = importlib.util.spec_from_file_location("metaworld_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.variant = variant or "paper_tasks"
    if variant == "smoke":
        c.base = base_config("tiny")
        c.base.methods = ("bc",)
        c.tasks = ("assembly-v3",)
        c.seeds = (0, 1)
    elif variant in ("", "paper_tasks"):
        c.base = base_config("quick")
        c.tasks = ("assembly-v3", "bin-picking-v3", "peg-insert-side-v3", "shelf-place-v3")
        c.seeds = (0, 1, 2)
    else:
        raise ValueError(f"Unknown variant {variant!r}; use one of: (none), smoke.")
    # Variant name -> overrides of the base config ("path=value; ..."); "default" is the base itself.
    # With the default, the four cells of the paper's Table 6 (continuous/discrete x joint/separate);
    # discrete + separate is LAPO's recipe (VQ latents, decoder fitted afterwards).
    c.variants = {"default": "", "separate": "stage1.joint=False; methods=('clam',)"}
    if variant != "smoke":
        c.variants.discrete = "lam.codebook_size=64; methods=('clam',)"
        c.variants.discrete_separate = "lam.codebook_size=64; stage1.joint=False; methods=('clam',)"
    return c
