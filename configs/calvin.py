"""CLAM on CALVIN (paper Appendix A.3, Table 8): transfer to a task that has no action-labelled data.

CALVIN's play data is converted once (`clam_jax.data.calvin`, README "CALVIN"), then:
  python -m clam_jax.train --config=configs/calvin.py --config.data.converted=/data/calvin_clam \
      --config.data.calvin_dir=/data/calvin/task_D_D --workdir=runs/calvin_close_drawer

`--config.task` is the target: `calvin-close_drawer` or `calvin-move_slider_left` (the
paper's), or another CALVIN task for training (the success oracle here knows the
drawer and slider tasks). States are robot_obs + scene_obs (39), actions CALVIN's
relative actions (7).

Variants, chosen with `--config=configs/calvin.py:<variant>`:
  (none)  paper scale: the Transformer CLAM of Table 13 (6 + 6 layers, d 512), the
          rest as configs/metaworld.py's paper preset. GPU work.
  quick   configs/metaworld.py's quick sizes and steps (its CPU-size transformer).
  tiny    a smoke test of the pipeline for the test suite.
"""
from pathlib import Path

import ml_collections

from clam_jax.cli import load_config

METAWORLD = Path(__file__).with_name("metaworld.py")


def get_config(variant: str = ""):
    c = load_config(METAWORLD, variant)  # refuses unknown variants
    c.variant = f"calvin_{variant or 'paper'}"
    c.task = "calvin-close_drawer"
    c.max_steps = 200  # Table 15
    # Recorded frames per policy step: must equal the converter's --action_repeat (README, "CALVIN").
    c.action_repeat = 1
    c.methods = ("clam", "bc", "vpt", "bc_expert")  # Table 8 (BC-AL, VPT, TF-CLAM); BC-Expert privileged
    c.lam.kind = "transformer"
    if not variant:
        c.lam.transformer = dict(embed_dim=512, num_heads=8, mlp_dim=2048, num_layers=6, dropout=0.1)
    # Table 8's regime, cut from the converted split `split` (clam_jax.data.calvin_regime): D_unlabeled a
    # random `unlabeled_fraction` of every task's segments; D_labeled the segments of `labeled.tasks` (other
    # tasks than the target, spanning the workspace; the paper does not list its five); D_unlabeled_expert the
    # target's. `episodes` 0 keeps all of them. `calvin_dir` (the CALVIN download) is read only to evaluate.
    c.data = ml_collections.ConfigDict(dict(
        converted="", calvin_dir="", split="training", unlabeled_fraction=0.1,
        labeled=dict(tasks=("open_drawer", "move_slider_right", "turn_on_lightbulb", "push_into_drawer",
                            "lift_red_block_table"), episodes=0),
        expert=dict(episodes=0)))
    if variant == "tiny":
        c.max_steps = 20
        c.lam.transformer = dict(embed_dim=16, num_heads=2, mlp_dim=32, num_layers=1, dropout=0.1)
        c.data.unlabeled_fraction = 0.5
    return c
