"""Space-Time CLAM on MetaWorld frames (paper Figure 3, Appendix G.2/G.3).

The datasets of configs/metaworld.py with every step also rendered from the
corner camera at 64x64 (uint8, beside the states); the LAM is the Space-Time
transformer over 16x16 patches, policies embed frames with an IMPALA-CNN, and
CLAM's latent policy starts from the IDM's image encoder (section 3.2).

Variants, chosen with `--config=configs/metaworld_images.py:<variant>`:
  (none)  paper scale: the state preset's data and step counts, stage-1 batches
          streamed from disk by grain workers. GPU work.
  quick   one task on a 2-core CPU, collect + train + evaluate in well under an hour:
          fewer and smaller everything (README, "Images").
  tiny    a smoke test of the whole image pipeline for the test suite.
"""
from pathlib import Path

from clam_jax.cli import load_config

METAWORLD = Path(__file__).with_name("metaworld.py")


def get_config(variant: str = ""):
    c = load_config(METAWORLD, variant)  # refuses unknown variants
    c.variant = f"images_{variant or 'paper'}"
    c.observation = "image"
    c.image_size = 64
    c.lam.kind = "space_time"
    c.methods = ("clam", "bc", "bc_expert", "lapo")
    c.policy.init_from_idm = True
    c.train.input = "stream"
    c.train.windows_per_episode = 32  # a read decodes a whole episode of frames; use more of it (README)
    c.train.relabel_batch_size = 1024
    if variant == "quick":
        c.data.unlabeled.episodes = 150
        c.data.labeled.episodes = 50
        c.data.expert.episodes = 50
        c.methods = ("clam", "bc", "bc_expert")
        c.lam.future = 0
        c.lam.space_time.update(embed_dim=128, num_heads=4, mlp_dim=256, num_layers=2, dropout=0.0)
        c.stage1.steps = 3_000
        c.stage1.batch_size = 32
        c.stage1.labeled_batch_size = 32
        c.stage1.warmup = 300
        c.stage1.separate_decoder_steps = 1_000
        c.policy.steps = 3_000
        c.policy.batch_size = 32
        c.policy.warmup = 300
        c.policy.hidden = (256, 256)
        c.policy.impala.update(channels=(16, 32, 32), features=128)
        c.train.input = "device"
        c.train.steps_per_dispatch = 1  # XLA:CPU runs convolutions in a scanned loop ~20x slower (training/loop.py)
        c.train.log_every = 500
        c.train.checkpoint_every = 1_000
        c.train.relabel_batch_size = 512
    elif variant == "tiny":
        c.image_size = 32
        c.lam.space_time.update(embed_dim=16, num_heads=2, mlp_dim=32, num_layers=1, dropout=0.0)
        c.policy.impala.update(channels=(4, 8), features=16)
        c.methods = ("clam", "bc")
        c.train.input = "device"
        c.train.relabel_batch_size = 64
    return c
