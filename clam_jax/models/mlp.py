"""Multi-layer perceptron used by every state-based component."""
from typing import Any, Sequence

import flax.linen as nn
import jax


class MLP(nn.Module):
    """Dense layers with LeakyReLU(0.2) between them and a linear output.

    `dtype` is the compute dtype (e.g. "bfloat16" for mixed precision); parameters
    stay float32 and the output is returned as float32, so losses and optimizer
    states are computed in full precision.
    """

    hidden: Sequence[int]
    out_dim: int
    dtype: Any = "float32"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.leaky_relu(nn.Dense(width, dtype=self.dtype)(x), 0.2)
        return nn.Dense(self.out_dim, dtype=self.dtype)(x).astype("float32")
