"""Stage-1 training throughput of clam_jax at the paper's MLP-CLAM sizes.

Mirrors ../shared/bench/torch_ref.py (same model sizes, batch, decoder every 2 steps,
in-memory synthetic episodes: 1000 unlabeled x 100 steps, 50 labeled) so the two
print comparable steps/s; run both in the same session on the same machine:

  python benchmarks/stage1_throughput.py --batch 128 --steps 2000
  <torch venv>/bin/python ../shared/bench/torch_ref.py --model mlp --batch 128 --steps 300

Prints one JSON line per steps-per-dispatch setting.
"""
import argparse
import functools
import json
import time

import jax
import numpy as np

from clam_jax.data.windows import pad_episodes
from clam_jax.methods import clam
from clam_jax.models.lam import ActionDecoder, MLPLatentActionModel
from clam_jax.training.loop import make_multi_step
from clam_jax.training.optim import make_optimizer
from clam_jax.training.sharding import batch_split, init_replicated, make_mesh, put_replicated

OBS, ACT, LATENT = 39, 4, 16


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--dispatch", type=int, nargs="+", default=[1, 100, 500])
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    unlabeled = rng.normal(size=(1000, 101, OBS)).astype(np.float32)
    labeled = rng.normal(size=(50, 101, OBS)).astype(np.float32)
    actions = rng.uniform(-1, 1, (50, 101, ACT)).astype(np.float32)
    mesh = make_mesh()
    lam = MLPLatentActionModel(obs_dim=OBS, latent_dim=LATENT, hidden=(1024, 1024), context=1)
    decoder = ActionDecoder(action_dim=ACT, embed_dim=512, hidden=(1024, 1024, 1024))
    lam_tx = make_optimizer(lr=3e-4, weight_decay=1e-3, warmup=1000, clip=1.0)
    decoder_tx = make_optimizer(lr=1e-3, weight_decay=0.01, warmup=1000, clip=1.0)
    step = clam.make_stage1_step(lam, decoder, lam_tx, decoder_tx, batch_size=args.batch,
                                 labeled_batch_size=args.batch, decoder_every=2, beta=1.0,
                                 batch_sharding=batch_split(mesh))
    data = put_replicated({"unlabeled": pad_episodes(unlabeled, 1, 0), "labeled": pad_episodes(labeled, 1, 0),
                           "labeled_actions": actions}, mesh)
    init = functools.partial(clam.init_stage1, lam=lam, decoder=decoder, lam_tx=lam_tx, decoder_tx=decoder_tx)
    params = sum(x.size for x in jax.tree.leaves(
        jax.eval_shape(init, jax.random.key(0)).lam_params)) + sum(
        x.size for x in jax.tree.leaves(jax.eval_shape(init, jax.random.key(0)).decoder_params))
    for k in args.dispatch:
        state = init_replicated(init, mesh, jax.random.key(0))
        multi_step = make_multi_step(step, k)
        state, metrics = multi_step(state, data)  # compile and warm up
        jax.block_until_ready(metrics)
        dispatches = max(1, args.steps // k)
        start = time.perf_counter()
        for _ in range(dispatches):
            state, metrics = multi_step(state, data)
        jax.block_until_ready(metrics)
        elapsed = time.perf_counter() - start
        print(json.dumps({"impl": "clam_jax", "model": "mlp", "batch": args.batch, "steps_per_dispatch": k,
                          "devices": mesh.size, "platform": jax.devices()[0].platform,
                          "steps_per_s": round(dispatches * k / elapsed, 2), "params": int(params),
                          "jax": jax.__version__}), flush=True)


if __name__ == "__main__":
    main()
