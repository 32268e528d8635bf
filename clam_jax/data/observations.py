"""What the models see of a step: the state vector, the frame, or the frame with the arm's proprioception.

An observation is an array, or, for frames with proprioception, the dict
{"image": uint8 frames [..., H, W, 3], "proprio": float32 [..., P]}. Code that
slices, pads or batches observations maps over the dict's leaves, which share
their leading axes, so both kinds go through the same windows, batches and
policies.
"""
import jax
import numpy as np


def model_observations(states: np.ndarray, frames: np.ndarray | None, proprio_dims: int = 0):
    """The observations of a model given the states [..., D] and frames [..., H, W, 3] (None: a state model)
    of the same steps; with `proprio_dims`, the frames and the states' first `proprio_dims` entries."""
    if frames is None:
        return states
    if not proprio_dims:
        return frames
    return {"image": frames, "proprio": states[..., :proprio_dims]}


def frames_and_proprio(observations):
    """(frames, proprioception) of image observations; proprioception None when they have none."""
    if isinstance(observations, dict):
        return observations["image"], observations["proprio"]
    return observations, None


def first_leaf(observations):
    """The array whose leading axes every leaf of `observations` shares (for their sizes)."""
    return jax.tree.leaves(observations)[0]
