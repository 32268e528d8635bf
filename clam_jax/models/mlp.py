"""Multi-layer perceptron used by every state-based component."""
from typing import Sequence

import flax.linen as nn
import jax


class MLP(nn.Module):
    """Dense layers with LeakyReLU(0.2) between them and a linear output."""

    hidden: Sequence[int]
    out_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.leaky_relu(nn.Dense(width)(x), 0.2)
        return nn.Dense(self.out_dim)(x)
