"""Space-Time transformer over video frames (paper Appendix G.3, after TimeSformer / Genie's ST blocks).

Frames [B, T, H, W, C] (uint8 pixels, or floats on the same 0..255 scale) are
cut into P x P patches, N = (H / P) * (W / P) per frame, each embedded by a
linear layer, with learned spatial and temporal position embeddings. A
`SpaceTimeBlock` attends within each frame (spatial), then across frames for
each patch position (temporal, optionally causal), then, in a decoder, from
every token to a memory (the latent actions), then a feed-forward layer; post-norm
residuals as `clam_jax.models.transformer`.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from clam_jax.models.transformer import FeedForward, PostNormSublayers, add_positions, project_memory


def to_unit(frames: jax.Array) -> jax.Array:
    """Pixels on the 0..255 scale -> float32 in [-1, 1]."""
    return frames.astype(jnp.float32) / 127.5 - 1.0


def patchify(frames: jax.Array, patch: int) -> jax.Array:
    """[..., H, W, C] -> [..., (H / P) * (W / P), P * P * C], patches in row-major order."""
    *lead, h, w, c = frames.shape
    x = frames.reshape(*lead, h // patch, patch, w // patch, patch, c)
    x = jnp.moveaxis(x, -4, -3)  # [..., H/P, W/P, P, P, C]
    return x.reshape(*lead, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: jax.Array, patch: int, height: int, width: int) -> jax.Array:
    """Inverse of `patchify`: [..., N, P * P * C] -> [..., H, W, C]."""
    *lead, _, size = patches.shape
    c = size // (patch * patch)
    x = patches.reshape(*lead, height // patch, width // patch, patch, patch, c)
    x = jnp.moveaxis(x, -3, -4)  # [..., H/P, P, W/P, P, C]
    return x.reshape(*lead, height, width, c)


class SpaceTimeBlock(PostNormSublayers):
    """x [B, T, N, D] -> [B, T, N, D]; `causal` masks temporal attention to earlier and current frames. Given
    key_value [B, K, 2D], a memory's keys and values (`project_memory`), every token also attends to them."""

    causal: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, key_value: jax.Array | None = None, train: bool = False) -> jax.Array:
        b, t, n, d = x.shape
        h = x.reshape(b * t, n, d)
        h = self.residual(h, self.attention("spatial_attention")(h, train=train), train, "norm1")
        h = h.reshape(b, t, n, d).swapaxes(1, 2).reshape(b * n, t, d)
        mask = nn.make_causal_mask(h[..., 0]) if self.causal else None
        h = self.residual(h, self.attention("temporal_attention")(h, mask=mask, train=train), train, "norm2")
        h = h.reshape(b, n, t, d).swapaxes(1, 2)
        if key_value is not None:
            q = h.reshape(b, t * n, d)
            q = self.residual(q, self.attention("cross_attention")(q, key_value, train=train), train, "norm3")
            h = q.reshape(b, t, n, d)
        return self.residual(h, FeedForward(self.mlp_dim, self.dropout, self.dtype)(h, train), train, "norm4")


class SpaceTimeTransformer(nn.Module):
    """Frames [B, T, H, W, C] -> tokens [B, T, (1 +) (1 +) N, D]; with `cls`, token 0 of each frame is a learned
    summary token (the paper's CLS token, from which latent actions or policy features are read). Given
    `proprio` [B, T, P] (the arm's proprioception at each frame), its linear embedding is one more token of the
    frame, after the CLS token and before the patches."""

    patch_size: int = 16
    embed_dim: int = 256
    num_heads: int = 4
    mlp_dim: int = 2048
    num_layers: int = 3
    dropout: float = 0.1
    max_frames: int = 16
    cls: bool = False
    causal: bool = False
    dtype: Any = "float32"

    @nn.compact
    def __call__(self, frames: jax.Array, memory: jax.Array | None = None, train: bool = False,
                 proprio: jax.Array | None = None) -> jax.Array:
        b, t = frames.shape[:2]
        x = nn.Dense(self.embed_dim, dtype=self.dtype, name="patch_embed")(
            patchify(to_unit(frames), self.patch_size).astype(self.dtype))
        if proprio is not None:
            token = nn.Dense(self.embed_dim, dtype=self.dtype, name="proprio_embed")(proprio.astype(self.dtype))
            x = jnp.concatenate([token[:, :, None], x], axis=2)
        if self.cls:
            token = self.param("cls_token", nn.initializers.normal(0.02), (self.embed_dim,))
            x = jnp.concatenate([jnp.broadcast_to(token.astype(x.dtype), (b, t, 1, self.embed_dim)), x], axis=2)
        positions = nn.initializers.normal(1.0)
        spatial = self.param("spatial_positions", positions, (x.shape[2], self.embed_dim))
        temporal = self.param("temporal_positions", positions, (self.max_frames, self.embed_dim))
        x = add_positions(x, spatial.astype(x.dtype) + temporal[:t, None].astype(x.dtype))
        key_value = None if memory is None else project_memory(memory, self.num_layers, self.dtype)
        for i in range(self.num_layers):
            x = SpaceTimeBlock(num_heads=self.num_heads, mlp_dim=self.mlp_dim, dropout=self.dropout,
                               dtype=self.dtype, causal=self.causal, name=f"block_{i}")(
                x, None if key_value is None else key_value[i], train=train)
        return x
