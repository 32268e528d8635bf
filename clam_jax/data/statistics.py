"""Per-dataset statistics: sizes, returns, success rates, and normalization moments."""
import dataclasses

import numpy as np

from clam_jax.data.episodes import Episodes


def dataset_statistics(episodes: Episodes) -> dict:
    """JSON-ready summary of a dataset, written beside it."""
    returns = episodes.rewards[:, :-1].sum(axis=1)
    actions = episodes.actions[:, :-1].reshape(-1, episodes.actions.shape[-1])
    observations = episodes.observations.reshape(-1, episodes.observations.shape[-1])
    per_behavior = {}
    for name in sorted(set(episodes.behavior.tolist())):
        mask = episodes.behavior == name
        per_behavior[name] = {
            "episodes": int(mask.sum()),
            "success_rate": float(episodes.success[mask].mean()),
            "return_mean": float(returns[mask].mean()),
        }
    return {
        "num_episodes": episodes.num_episodes,
        "steps_per_episode": episodes.num_steps,
        "num_transitions": episodes.num_episodes * episodes.num_steps,
        "obs_dim": int(episodes.observations.shape[-1]),
        "action_dim": int(episodes.actions.shape[-1]),
        "success_rate": float(episodes.success.mean()),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "observation_mean": observations.mean(0).tolist(),
        "observation_std": observations.std(0).tolist(),
        "step_motion": step_motion(episodes.observations),
        "action_mean": actions.mean(0).tolist(),
        "action_std": actions.std(0).tolist(),
        "behaviors": per_behavior,
    }


def step_motion(observations: np.ndarray, still: float = 1e-3) -> float:
    """How far the states [N, T + 1, D] move in one step, relative to their spread: the median, over the
    dimensions that move (RMS step above `still` of their spread), of RMS(o[t+1] - o[t]) / std(o); 0 if none
    moves. Its reciprocal is the rule that set `lam.difference_scale` (README, "Sharper labels"): z-scored
    MetaWorld states move about 0.1 a step, so their differences are scaled by 10."""
    observations = np.asarray(observations, np.float64)
    spread = observations.reshape(-1, observations.shape[-1]).std(0)
    steps = np.diff(observations, axis=1).reshape(-1, observations.shape[-1])
    relative = np.sqrt(np.mean(steps ** 2, axis=0)) / np.where(spread > 0, spread, np.inf)
    moving = relative[relative > still]
    return float(np.median(moving)) if moving.size else 0.0


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """Z-scores observations with the moments of the dataset the models are trained on."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_statistics(cls, stats: dict, min_std: float = 1e-2, dims: int | None = None) -> "Normalizer":
        """From a dataset's statistics; of the first `dims` entries of the observations if given."""
        std = np.maximum(np.asarray(stats["observation_std"][:dims], np.float32), min_std)
        return cls(mean=np.asarray(stats["observation_mean"][:dims], np.float32), std=std)

    def __call__(self, observations):
        return (observations - self.mean) / self.std

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(mean=np.asarray(d["mean"], np.float32), std=np.asarray(d["std"], np.float32))


@dataclasses.dataclass(frozen=True)
class PixelNormalizer:
    """Leaves frames as uint8 pixels: image models scale them themselves (`clam_jax.models.space_time.to_unit`),
    so datasets of frames are held, sampled and moved at a quarter of float32's size."""

    def __call__(self, frames):
        return frames

    def to_dict(self) -> dict:
        return {"pixels": True}


@dataclasses.dataclass(frozen=True)
class PartsNormalizer:
    """Normalizes each part of dict observations (`clam_jax.data.observations`) with its own normalizer."""

    parts: dict

    def __call__(self, observations: dict) -> dict:
        return {name: normalizer(observations[name]) for name, normalizer in self.parts.items()}

    def to_dict(self) -> dict:
        return {"parts": {name: normalizer.to_dict() for name, normalizer in self.parts.items()}}


def normalizer_from_dict(d: dict) -> Normalizer | PixelNormalizer | PartsNormalizer:
    """The normalizer a saved policy's spec describes (`to_dict` of any kind)."""
    if "parts" in d:
        return PartsNormalizer({name: normalizer_from_dict(part) for name, part in d["parts"].items()})
    return PixelNormalizer() if d.get("pixels") else Normalizer.from_dict(d)
