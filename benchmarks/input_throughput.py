"""Input rate of the streamed stage-1 pipeline alone (clam_jax.data.streaming), without training.

Writes one synthetic dataset per observation size, reads it as both the
unlabeled and the labeled dataset, and prints one JSON line per (obs_dim, steps
per dispatch, windows per episode read, workers, device transfer); windows/s
counts unlabeled and labeled windows. Episodes store flat float32 observations,
so image-sized data is measured with 64 * 64 * 3 = 12288 floats per frame, a
proxy 4x larger on disk than uint8 frames would be. The cost of a read does not
depend on the number of episodes (while they sit in the page cache) and the rate
per window hardly on the batch, so the defaults (20 episodes, batch 64) keep the
run about a minute; pass --dir to keep the datasets between runs:

  python benchmarks/input_throughput.py
  python benchmarks/input_throughput.py --obs-dims 39 --episodes 200 --batch 128 --dispatch 100 --workers 0 2 4
  python benchmarks/input_throughput.py --obs-dims 12288 --windows-per-episode 8 32 --dir /tmp/bench
"""
import argparse
import contextlib
import itertools
import json
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

from clam_jax.data.episodes import Episodes, write_episodes
from clam_jax.data.statistics import Normalizer
from clam_jax.data.streaming import make_stage1_loader, measure_input_rate
from clam_jax.training.sharding import chunk_sharding, make_mesh

ACTION_DIM = 4


def synthetic_episodes(num_episodes: int, num_steps: int, obs_dim: int) -> Episodes:
    rng = np.random.default_rng(0)
    return Episodes(
        observations=rng.standard_normal((num_episodes, num_steps + 1, obs_dim), np.float32),
        actions=rng.uniform(-1, 1, (num_episodes, num_steps + 1, ACTION_DIM)).astype(np.float32),
        rewards=np.zeros((num_episodes, num_steps + 1), np.float32),
        success=np.zeros(num_episodes, bool),
        behavior=np.array(["random"] * num_episodes))


def dataset(root: Path, obs_dim: int, num_episodes: int, num_steps: int) -> Path:
    """The synthetic dataset's folder, written unless it is already there."""
    directory = root / f"obs{obs_dim}_{num_episodes}x{num_steps}"
    if not directory.exists():
        with contextlib.redirect_stdout(sys.stderr):  # TFDS reports progress on stdout; keep it JSON only
            write_episodes(directory, synthetic_episodes(num_episodes, num_steps, obs_dim), {})
    return directory


def measure(directory: Path, obs_dim: int, args, sharding) -> None:
    """Prints one JSON line per setting."""
    normalizer = Normalizer(mean=np.zeros(obs_dim, np.float32), std=np.ones(obs_dim, np.float32))
    settings = itertools.product(args.dispatch, args.windows_per_episode, args.workers, (False, True))
    for steps_per_dispatch, windows_per_episode, num_workers, to_device in settings:
        loader = make_stage1_loader(
            directory, directory, normalizer, context=1, future=0, batch_size=args.batch,
            labeled_batch_size=args.batch, steps_per_dispatch=steps_per_dispatch, seed=0,
            num_workers=num_workers, windows_per_episode=windows_per_episode)
        rate = measure_input_rate(loader, args.seconds, sharding if to_device else None)
        print(json.dumps({
            "obs_dim": obs_dim, "batch": args.batch, "steps_per_dispatch": steps_per_dispatch,
            "windows_per_episode": windows_per_episode, "num_workers": num_workers,
            "windows_per_s": round(rate["windows_per_s"]), "chunks_per_s": round(rate["chunks_per_s"], 3),
            "to_device": to_device, "device": jax.devices()[0].platform}), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", help="Where to write the datasets (default: a temporary folder).")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--obs-dims", type=int, nargs="+", default=[39, 64 * 64 * 3])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dispatch", type=int, nargs="+", default=[4])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--windows-per-episode", type=int, nargs="+", default=[8])
    parser.add_argument("--seconds", type=float, default=1.0, help="Least time spent reading per setting.")
    args = parser.parse_args()

    sharding = chunk_sharding(make_mesh())
    with tempfile.TemporaryDirectory() as tmp:
        for obs_dim in args.obs_dims:
            measure(dataset(Path(args.dir or tmp), obs_dim, args.episodes, args.steps), obs_dim, args, sharding)


if __name__ == "__main__":
    main()
