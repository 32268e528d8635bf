"""Rendered evaluation episodes saved as animated GIFs."""
from pathlib import Path

import numpy as np


def save_videos(directory, frames: np.ndarray, seconds_per_frame: float = 0.1) -> list[Path]:
    """frames: [episodes, T, H, W, 3] uint8 -> one GIF per episode."""
    import imageio

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"episode_{i}.gif" for i in range(len(frames))]
    for path, episode in zip(paths, frames):
        imageio.mimsave(path, list(episode), duration=seconds_per_frame)
    return paths
