"""Post-norm transformer blocks as in the paper's PyTorch models (Table 12: GELU, dropout 0.1).

Each block is `x = LayerNorm(x + Dropout(sublayer(x)))` for every sublayer, as
`torch.nn.TransformerEncoderLayer` / `DecoderLayer` with `norm_first=False`.
Masks are boolean, True where attention is allowed, broadcastable to
[batch, heads, queries, keys].
"""
from typing import Any

import flax.linen as nn
import jax


class FeedForward(nn.Module):
    mlp_dim: int
    dropout: float
    dtype: Any = "float32"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        h = nn.gelu(nn.Dense(self.mlp_dim, dtype=self.dtype)(x), approximate=False)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.Dense(x.shape[-1], dtype=self.dtype)(h)


class PostNormSublayers(nn.Module):
    """Shared plumbing: residual, dropout and LayerNorm around each sublayer."""

    num_heads: int
    mlp_dim: int
    dropout: float
    dtype: Any = "float32"

    def attention(self, name: str):
        return nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dropout_rate=self.dropout,
                                               dtype=self.dtype, name=name)

    def residual(self, x, update, train: bool, name: str):
        update = nn.Dropout(self.dropout, deterministic=not train)(update)
        return nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name=name)(x + update)


class EncoderBlock(PostNormSublayers):
    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None, train: bool = False) -> jax.Array:
        x = self.residual(x, self.attention("self_attention")(x, x, mask=mask, deterministic=not train),
                          train, "norm1")
        return self.residual(x, FeedForward(self.mlp_dim, self.dropout, self.dtype)(x, train), train, "norm2")


class DecoderBlock(PostNormSublayers):
    @nn.compact
    def __call__(self, x: jax.Array, memory: jax.Array, self_mask: jax.Array | None = None,
                 memory_mask: jax.Array | None = None, train: bool = False) -> jax.Array:
        x = self.residual(x, self.attention("self_attention")(x, x, mask=self_mask, deterministic=not train),
                          train, "norm1")
        x = self.residual(
            x, self.attention("cross_attention")(x, memory, mask=memory_mask, deterministic=not train),
            train, "norm2")
        return self.residual(x, FeedForward(self.mlp_dim, self.dropout, self.dtype)(x, train), train, "norm3")
