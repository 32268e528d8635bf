"""Input rate of the streamed stage-1 pipeline alone (clam_jax.data.streaming), without training.

Writes one synthetic dataset per observation size (39-D float32 states, or
uint8 frames of S x S x 3 stored beside them as the image datasets are), reads
it as both the unlabeled and the labeled dataset, and prints one JSON line per
(observation, steps per dispatch, windows per episode read, workers, device
transfer); windows/s counts unlabeled and labeled windows. `--data DIR` reads a
collected image workdir's datasets (DIR/data/unlabeled, DIR/data/labeled) instead.
The cost of a read does not depend on the number of episodes (while they sit in
the page cache) and the rate per window hardly on the batch, so the defaults (20
episodes, batch 64) keep the run about a minute; pass --dir to keep the datasets
between runs:

  python benchmarks/input_throughput.py
  python benchmarks/input_throughput.py --obs-dims 39 --image-sizes --episodes 200 --batch 128 --dispatch 100
  python benchmarks/input_throughput.py --obs-dims --image-sizes 64 84 --windows-per-episode 8 32 --dir /tmp/bench
  python benchmarks/input_throughput.py --data runs/images_quick --batch 32
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
from clam_jax.data.statistics import Normalizer, PixelNormalizer
from clam_jax.data.streaming import make_stage1_loader, measure_input_rate
from clam_jax.training.sharding import chunk_sharding, make_mesh

ACTION_DIM = 4


def synthetic_episodes(num_episodes: int, num_steps: int, obs_dim: int, image_size: int = 0) -> Episodes:
    rng = np.random.default_rng(0)
    frames = (num_episodes, num_steps + 1, image_size, image_size, 3)
    return Episodes(
        observations=rng.standard_normal((num_episodes, num_steps + 1, obs_dim), np.float32),
        actions=rng.uniform(-1, 1, (num_episodes, num_steps + 1, ACTION_DIM)).astype(np.float32),
        rewards=np.zeros((num_episodes, num_steps + 1), np.float32),
        success=np.zeros(num_episodes, bool),
        behavior=np.array(["random"] * num_episodes),
        images=rng.integers(0, 256, frames, np.uint8) if image_size else None)


def dataset(root: Path, name: str, episodes) -> Path:
    """The synthetic dataset's folder, written unless it is already there."""
    directory = root / name
    if not directory.exists():
        with contextlib.redirect_stdout(sys.stderr):  # TFDS reports progress on stdout; keep it JSON only
            write_episodes(directory, episodes(), {})
    return directory


def measure(unlabeled: Path, labeled: Path, observation: str, args, sharding) -> None:
    """Prints one JSON line per setting; `observation` is "state<D>" or "image<S>"."""
    if observation.startswith("image"):
        normalizer, key = PixelNormalizer(), "image"
    else:
        obs_dim = int(observation.removeprefix("state"))
        normalizer = Normalizer(mean=np.zeros(obs_dim, np.float32), std=np.ones(obs_dim, np.float32))
        key = "observation"
    settings = itertools.product(args.dispatch, args.windows_per_episode, args.workers, (False, True))
    for steps_per_dispatch, windows_per_episode, num_workers, to_device in settings:
        loader = make_stage1_loader(
            unlabeled, labeled, normalizer, context=1, future=0, observation_key=key, batch_size=args.batch,
            labeled_batch_size=args.batch, steps_per_dispatch=steps_per_dispatch, seed=0,
            num_workers=num_workers, windows_per_episode=windows_per_episode)
        rate = measure_input_rate(loader, args.seconds, sharding if to_device else None)
        print(json.dumps({
            "observation": observation, "batch": args.batch, "steps_per_dispatch": steps_per_dispatch,
            "windows_per_episode": windows_per_episode, "num_workers": num_workers,
            "windows_per_s": round(rate["windows_per_s"]), "chunks_per_s": round(rate["chunks_per_s"], 3),
            "to_device": to_device, "device": jax.devices()[0].platform}), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", help="Where to write the datasets (default: a temporary folder).")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--data", help="A collected image workdir to read instead of synthetic datasets.")
    parser.add_argument("--obs-dims", type=int, nargs="*", default=[39])
    parser.add_argument("--image-sizes", type=int, nargs="*", default=[64])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dispatch", type=int, nargs="+", default=[4])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--windows-per-episode", type=int, nargs="+", default=[8])
    parser.add_argument("--seconds", type=float, default=1.0, help="Least time spent reading per setting.")
    args = parser.parse_args()

    sharding = chunk_sharding(make_mesh())
    if args.data:
        root = Path(args.data) / "data"
        measure(root / "unlabeled", root / "labeled", "image", args, sharding)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root, n, t = Path(args.dir or tmp), args.episodes, args.steps
        for obs_dim in args.obs_dims:
            data = dataset(root, f"obs{obs_dim}_{n}x{t}", lambda: synthetic_episodes(n, t, obs_dim))
            measure(data, data, f"state{obs_dim}", args, sharding)
        for size in args.image_sizes:
            data = dataset(root, f"image{size}_{n}x{t}", lambda: synthetic_episodes(n, t, 39, size))
            measure(data, data, f"image{size}", args, sharding)


if __name__ == "__main__":
    main()
