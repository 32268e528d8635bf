"""The locomotion comparison (paper Table 1) at the quick preset: normalized return per method.

  python -m clam_jax.experiments --config=configs/experiments/dmc_table.py --workdir=runs/dmc_table
  python -m clam_jax.experiments --config=configs/experiments/dmc_table.py:val --workdir=runs/dmc_val
  python -m clam_jax.experiments --config=configs/experiments/dmc_table.py:gym_tasks --workdir=runs/dmc_gym

Tasks: cheetah-run and walker-walk (dm_control's hopper needs more SAC than the quick preset's 60k policy steps:
README, "Locomotion") x seeds 0, 1, 2. Columns (the grid's variants; all but full_replay on the same data):
  default      every method.
  differences  CLAM, VPT and LAPO whose IDMs also read the window's frame-to-frame differences (README, "Sharper
               labels"), scaled by 1 / `step_motion` of the task's D_unlabeled on seed 0 (how far z-scored states
               move in a step, `clam_jax.data.statistics`; cheetah-run 0.61, walker-walk 0.43), the rule that gives
               MetaWorld's 10.
  differences_paper_window  the same with the paper's window (below) as well.
  differences_paper_window_with_expert  the same with the expert episodes' observations in D_unlabeled
               (`unlabeled_includes_expert`: the paper has D_unlabeled-expert inside D_unlabeled; this D_unlabeled,
               the buffer up to half the final return, holds nothing like the expert's states).
  full_replay  CLAM, VPT and LAPO with D_unlabeled the agent's whole buffer (`data.medium_fraction=100`), not the
               buffer up to half the final return: on cheetah-run the quick preset's SAC run reaches that point
               after 24-46 episodes, so its D_unlabeled holds few states like the expert's (paper: 1000
               medium-replay episodes).
  replay_labels  CLAM, VPT and LAPO with both IDM inputs, LAPA, DynaMo and BC, D_labeled 10 episodes drawn from
               D_unlabeled (the paper's protocol: it subsamples medium-replay; the preset's D_labeled is the
               buffer's first 10 episodes, of uniform random actions). A data regime of its own, reported beside
               the table.
  paper_window CLAM, VPT and LAPO with the paper's IDM window o[t-1 .. t+1] (`lam.future=0`): the quick preset's
               o[t-1 .. t+3] was chosen on MetaWorld (README, "What limits CLAM").
  transformer_paper_window  TF-CLAM (the transformer LAM at the quick preset's CPU size) with the paper's window;
               the transformer reads no differences. `_60k_steps`: the same with 3x the stage-1 steps.
`gym_tasks`: the paper's own robots, gymnasium's HalfCheetah-v5 and Hopper-v5 (Hopper's SAC runs 300 episodes, set
from one run on seed 0), seeds 0, 1, 2, `test`: every method at the preset, and the columns that Table 1 chose on
cheetah-run's and walker-walk's `val` (CLAM and LAPO both IDM inputs, VPT both with the expert's observations in
D_unlabeled), so nothing is chosen on these tasks; and TF-CLAM (`transformer_paper_window`, `_60k_steps`), the
paper's best row there.
The `test` initial states report; the `val` variant chooses: both tasks on the `val` initial states, the same
seeds and data, the same columns but full_replay and replay_labels, BC-Expert beside them for scale: each
method's best column on `val` is the one whose `test` return the README reports as its Table 1 entry (`python -m
clam_jax.selection --val=runs/dmc_val --test=runs/dmc_table`). Training is the same on either split, so the
`val` grid evaluates the `test` grid's policies (`--policies_from=runs/dmc_table`) instead of training them again.
"""
from pathlib import Path

import ml_collections

from clam_jax.cli import load_config

LATENT_METHODS = "methods=('clam', 'vpt', 'lapo')"
TASKS = ("cheetah-run", "walker-walk")
GYM_TASKS = ("HalfCheetah-v5", "Hopper-v5")
# 1 / `step_motion` of seed 0's D_unlabeled (0.61, 0.43, 1.62, 0.25; `collect` prints it), rounded.
DIFFERENCE_SCALES = {"cheetah-run": 1.6, "walker-walk": 2.3, "HalfCheetah-v5": 0.62, "Hopper-v5": 4.0}
BOTH = "lam.difference_scale={scale}; lam.future=0"
TRANSFORMER = "lam.kind='transformer'; lam.future=0; methods=('clam',)"
TRANSFORMER_COLUMNS = {"transformer_paper_window": TRANSFORMER,
                       "transformer_paper_window_60k_steps": f"{TRANSFORMER}; stage1.steps=60_000"}


def per_task(overrides: str, extra: str) -> dict:
    """`overrides` with each task's difference scale, then `extra`."""
    return {task: overrides.format(scale=scale) + extra for task, scale in DIFFERENCE_SCALES.items()}


def latent_columns(extra: str) -> dict:
    """The four IDM-input columns and D_unlabeled with the expert's observations, each with `extra` appended."""
    return {"default": extra, "differences": per_task("lam.difference_scale={scale}", extra),
            "differences_paper_window": per_task(BOTH, extra),
            "differences_paper_window_with_expert": per_task(f"{BOTH}; unlabeled_includes_expert=True", extra),
            "paper_window": "lam.future=0" + extra}


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    if variant not in ("", "paper_tasks", "val", "gym_tasks"):
        raise ValueError(f"Unknown variant {variant!r}; use: (none), val, gym_tasks.")
    c = ml_collections.ConfigDict()
    c.variant = variant or "paper_tasks"
    c.base = load_config(Path(__file__).resolve().parents[1] / "dmc.py", "quick")
    c.seeds = (0, 1, 2)
    c.seeds_per_program = 1
    c.metric = "normalized_return"
    if c.variant == "gym_tasks":
        c.tasks = GYM_TASKS
        c.task_base = {"Hopper-v5": "agent.episodes=300"}
        c.variants = {"default": "", "differences_paper_window": per_task(BOTH, f"; {LATENT_METHODS}"),
                      "differences_paper_window_with_expert": per_task(f"{BOTH}; unlabeled_includes_expert=True",
                                                                       "; methods=('vpt',)"),
                      **TRANSFORMER_COLUMNS}
        return c
    c.tasks = TASKS
    c.variants = latent_columns(f"; {LATENT_METHODS}")
    c.variants.update(TRANSFORMER_COLUMNS)
    if c.variant == "val":
        c.base.eval.split = "val"
        c.variants["default"] = "methods=('clam', 'vpt', 'lapo', 'bc_expert')"
        return c
    c.variants["default"] = ""
    c.variants["full_replay"] = f"data.medium_fraction=100.0; {LATENT_METHODS}"
    c.variants["replay_labels"] = per_task(f"{BOTH}; labeled_from_unlabeled=10",
                                           "; methods=('clam', 'vpt', 'lapo', 'lapa', 'dynamo', 'bc')")
    return c
