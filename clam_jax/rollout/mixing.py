"""An actor whose action is put together from two policies' actions, to find which part limits a policy.

E.g. a MetaWorld arm's action is an xyz motion (dimensions 0-2) and a gripper command (3): CLAM's policy
with BC-Expert's xyz motion tells whether CLAM's gripper is good enough, and the reverse whether its arm
motion is (README, "What limits CLAM at the quick preset").
"""
import numpy as np

from clam_jax.errors import ConfigError
from clam_jax.rollout.chunking import start_episodes


class MixedActor:
    """`actor(observations [N, ...]) -> actions [N, A]`: dimensions `dims` of `other`'s actions, the rest of
    `base`'s; both actors see every observation, and `reset()` resets both."""

    def __init__(self, base, other, dims, action_dim: int):
        dims = sorted(set(dims))
        if not dims or dims[0] < 0 or dims[-1] >= action_dim:
            raise ConfigError(f"Action dimensions to mix must be in 0 .. {action_dim - 1}, got {dims}.")
        self.base, self.other, self.dims = base, other, dims

    def reset(self) -> None:
        start_episodes(self.base)
        start_episodes(self.other)

    def __call__(self, observations) -> np.ndarray:
        actions = np.array(self.base(observations))
        actions[:, self.dims] = np.asarray(self.other(observations))[:, self.dims]
        return actions
