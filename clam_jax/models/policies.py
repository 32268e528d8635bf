"""Policies over pixels (paper Appendix G.1) and the constructor of any saved policy from its spec.

State policies are `MLPPolicy`; an image policy embeds the frame with an
IMPALA-CNN, or with the Space-Time encoder of a Space-Time IDM (paper section
3.2: the LAM's image encoder as pretrained features for the latent policy),
and maps the features to its output with the same MLP head. Given dict
observations (frames and the arm's proprioception, `clam_jax.data.observations`),
the proprioception joins the features: concatenated to the IMPALA features, or as
the Space-Time encoder's proprioception token.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from clam_jax.data.observations import frames_and_proprio
from clam_jax.errors import ConfigError
from clam_jax.models.lam import MLPPolicy
from clam_jax.models.mlp import MLP
from clam_jax.models.space_time import SpaceTimeTransformer, to_unit

IMAGE_ENCODERS = ("impala", "space_time")


class ImpalaEncoder(nn.Module):
    """IMPALA-CNN (Espeholt et al. 2018): per stage a 3x3 convolution, 3x3 max-pooling with stride 2 and two
    residual blocks of two 3x3 convolutions; then ReLU, flatten and a dense layer with ReLU."""

    channels: Sequence[int] = (16, 32, 32)
    features: int = 256
    dtype: Any = "float32"

    @nn.compact
    def __call__(self, frames: jax.Array) -> jax.Array:
        """[B, H, W, C] pixels on the 0..255 scale -> [B, features]."""
        x = to_unit(frames).astype(self.dtype)
        for channels in self.channels:
            x = nn.Conv(channels, (3, 3), dtype=self.dtype)(x)
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
            for _ in range(2):
                h = nn.Conv(channels, (3, 3), dtype=self.dtype)(nn.relu(x))
                x = x + nn.Conv(channels, (3, 3), dtype=self.dtype)(nn.relu(h))
        x = nn.relu(x).reshape(x.shape[0], -1)
        return nn.relu(nn.Dense(self.features, dtype=self.dtype)(x))


class ImagePolicy(nn.Module):
    """Frames [B, H, W, C] (or {"image": frames, "proprio": [B, P]}) -> output; `encoder` "impala" (sizes in
    `impala`) or "space_time" (the sizes of the Space-Time IDM in `space_time`, whose parameters it can take:
    `with_idm_encoder`), then an MLP."""

    out_dim: int
    hidden: Sequence[int]
    squash: bool = False
    encoder: str = "impala"
    impala: Any = None
    space_time: Any = None
    dtype: Any = "float32"

    @nn.compact
    def __call__(self, observations) -> jax.Array:
        frames, proprio = frames_and_proprio(observations)
        if self.encoder == "impala":
            features = ImpalaEncoder(**dict(self.impala or {}), dtype=self.dtype, name="encoder")(frames)
            if proprio is not None:
                features = jnp.concatenate([features, proprio.astype(features.dtype)], axis=-1)
        elif self.encoder == "space_time":
            tokens = SpaceTimeTransformer(cls=True, **dict(self.space_time), dtype=self.dtype, name="encoder")(
                frames[:, None], proprio=None if proprio is None else proprio[:, None])
            features = tokens[:, 0, 0]  # the frame's CLS token
        else:
            raise ConfigError(f"Unknown image encoder {self.encoder!r}; use one of {IMAGE_ENCODERS}.")
        out = MLP(self.hidden, self.out_dim, self.dtype)(features)
        return jnp.tanh(out) if self.squash else out


def with_idm_encoder(params: dict, lam_params: dict) -> dict:
    """An `ImagePolicy` (encoder "space_time")'s `params` with the encoder taken from a Space-Time LAM's."""
    return {"params": {**params["params"], "encoder": lam_params["params"]["idm_encoder"]}}


def make_policy(spec: dict) -> nn.Module:
    """The policy module of a saved policy's `spec["policy"]`: {"kind": "mlp" | "image", **its fields}."""
    fields = dict(spec)
    kind = fields.pop("kind", "mlp")
    if kind == "image":
        return ImagePolicy(**fields)
    if kind == "mlp":
        return MLPPolicy(**fields)
    raise ConfigError(f"Unknown policy kind {kind!r}; use 'mlp' or 'image'.")
