"""MLP latent action model (paper Appendix G.3) and the action decoder.

A window holds `context` past frames, the current frame o_t, o_{t+1}, and
`future` frames after it: [o_{t-H} .. o_t, o_{t+1}, .. o_{t+1+F}]. The IDM
reads the whole window and returns z_t for the transition o_t -> o_{t+1}; the
FDM reads o_{t-H} .. o_t and z_t and predicts o_{t+1}.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from clam_jax.models.mlp import MLP


class MLPLatentActionModel(nn.Module):
    obs_dim: int
    latent_dim: int
    hidden: Sequence[int]
    context: int = 1
    future: int = 0
    dtype: Any = "float32"

    @property
    def window(self) -> int:
        return self.context + 2 + self.future

    def setup(self):
        self.idm_net = MLP(self.hidden, self.latent_dim, self.dtype)
        self.fdm_net = MLP(self.hidden, self.obs_dim, self.dtype)

    def idm(self, window: jax.Array) -> jax.Array:
        """[B, window, obs_dim] -> z_t [B, latent_dim]."""
        return self.idm_net(window.reshape(window.shape[0], -1))

    def fdm(self, past: jax.Array, z: jax.Array) -> jax.Array:
        """past [B, context + 1, obs_dim], z [B, latent_dim] -> predicted o_{t+1} [B, obs_dim]."""
        return self.fdm_net(jnp.concatenate([past.reshape(past.shape[0], -1), z], axis=-1))

    def __call__(self, window: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns (z_t, predicted o_{t+1})."""
        z = self.idm(window)
        return z, self.fdm(window[:, : self.context + 1], z)


class ActionDecoder(nn.Module):
    """z -> action in [-1, 1]: a linear embedding, an MLP, tanh (paper Table 11)."""

    action_dim: int
    embed_dim: int
    hidden: Sequence[int]
    dtype: Any = "float32"

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        embedding = nn.Dense(self.embed_dim, dtype=self.dtype)(z)
        return jnp.tanh(MLP(self.hidden, self.action_dim, self.dtype)(embedding))


class MLPPolicy(nn.Module):
    """obs -> output; `squash` puts outputs in [-1, 1] (actions), off for latent actions."""

    out_dim: int
    hidden: Sequence[int]
    squash: bool = False
    dtype: Any = "float32"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        out = MLP(self.hidden, self.out_dim, self.dtype)(obs)
        return jnp.tanh(out) if self.squash else out
