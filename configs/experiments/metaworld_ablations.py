"""What limits CLAM against BC-Expert at the quick preset: the IDM's window (CLAM and VPT), training length,
model size; then the data that might close the gap (the `drift` variant) and sharper labels (`labels`).

  python -m clam_jax.experiments --config=configs/experiments/metaworld_ablations.py --workdir=runs/ablations
  python -m clam_jax.experiments --config=configs/experiments/metaworld_ablations.py:drift --workdir=runs/drift
  python -m clam_jax.experiments --config=configs/experiments/metaworld_ablations.py:labels --workdir=runs/labels

Evaluated on the `val` variations: these results choose presets, so they never look at `test`.
Variants:
  (none)  assembly-v3 and bin-picking-v3 x seeds 0, 1, 2; columns: the quick preset (CLAM, VPT, LAPO,
          BC-Expert); the paper's IDM window o[t-1 .. t+1] for CLAM and VPT (separates VPT's window
          from its play data, README "Measurements"); 3x the policy steps (CLAM, VPT); 3x the stage-1
          steps (CLAM); the paper's MLP-CLAM sizes (LAM and policy hidden 1024, decoder 3 x 1024).
  drift   the same tasks and seeds; CLAM's arm drifts off the expert's states in closed loop (README), so the
          columns change the data, not the model: the preset (CLAM, VPT, BC-Expert); demonstrations by an
          expert with i.i.d. action noise of std 0.1 (DART's remedy: the demonstrations visit the states
          around the expert's and show it returning; 89-100% of them succeed; all methods imitate the same
          noisy episodes; CLAM, BC-Expert); 3x the expert episodes (CLAM, BC-Expert); 3x the play episodes
          (CLAM, VPT). `clam_decoded` (BC on CLAM's decoded labels: the labels without acting through
          latents) in the preset, noisy-expert and 3x-play columns.
  labels  the same tasks and seeds; the IDMs' labels are the expert's actions blurred over neighbouring steps
          (README), so the IDMs (CLAM's and VPT's) also see the window's frame-to-frame differences, scaled by 10
          (z-scored states move 0.04-0.16 of their spread per step); with the preset's window, with the
          paper's o[t-1 .. t+1], and with play whose noise is i.i.d. (a new step each step, where the preset's
          OU noise drifts) (CLAM, VPT; LAPO too with the preset's window); and how much the factor matters: 3
          and 30 instead of 10 (CLAM). The preset's numbers are the `limits` grid's.
"""
from pathlib import Path

import ml_collections

from clam_jax.cli import load_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    if variant not in ("", "limits", "drift", "labels"):
        raise ValueError(f"Unknown variant {variant!r}; use: (none), drift, labels.")
    c = ml_collections.ConfigDict()
    c.variant = variant or "limits"
    c.base = load_config(Path(__file__).resolve().parents[1] / "metaworld.py", "quick")
    c.base.eval.split = "val"
    c.base.methods = ("clam", "vpt", "lapo", "bc_expert")
    c.tasks = ("assembly-v3", "bin-picking-v3")
    c.seeds = (0, 1, 2)
    c.seeds_per_program = 1
    if c.variant == "drift":
        c.variants = {  # run in alphabetical order: the preset last, its numbers are known (limits grid)
            "preset": "methods=('clam', 'vpt', 'bc_expert', 'clam_decoded')",
            "noisy_expert": "data.expert.behaviors=('expert_noise0.1',); methods=('clam', 'bc_expert', 'clam_decoded')",
            "expert_300": "data.expert.episodes=300; methods=('clam', 'bc_expert')",
            "play_300": "data.labeled.episodes=300; methods=('clam', 'vpt', 'clam_decoded')",
        }
        return c
    if c.variant == "labels":
        iid_play = "data.labeled.behaviors=('expert_noise0.3', 'expert_noise0.5', 'expert_noise1.0', 'random')"
        c.variants = {
            "differences": "lam.difference_scale=10.0; methods=('clam', 'vpt', 'lapo')",
            "differences_paper_window": "lam.difference_scale=10.0; lam.future=0; methods=('clam', 'vpt')",
            "differences_iid_play": f"lam.difference_scale=10.0; {iid_play}; methods=('clam', 'vpt')",
            "differences_scale3": "lam.difference_scale=3.0; methods=('clam',)",
            "differences_scale30": "lam.difference_scale=30.0; methods=('clam',)",
        }
        return c
    c.variants = {
        "default": "",
        "paper_window": "lam.future=0; methods=('clam', 'vpt')",
        "policy_30k": "policy.steps=30000; methods=('clam', 'vpt')",
        "stage1_60k": "stage1.steps=60000; methods=('clam',)",
        "paper_sizes": "lam.hidden=(1024, 1024); decoder.embed_dim=512; decoder.hidden=(1024, 1024, 1024); "
                       "policy.hidden=(1024, 1024); methods=('clam',)",
    }
    return c
