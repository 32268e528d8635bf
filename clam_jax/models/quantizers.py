"""Vector quantization of latent actions with an EMA codebook (the discrete-latent baselines: LAPO, LAPA).

The codebook lives in the "vq" collection and follows exponential moving
averages of the inputs assigned to each codeword (VQ-VAE-2), updated when the
module runs with `train=True` and `mutable=["vq", ...]`. The encoder gets the
straight-through gradient of the quantized output plus the commitment loss
`commitment * ||z - sg(q)||^2`, sown into the "losses" collection; codebook
perplexity and the share of codewords in use go to "stats".
"""
import flax.linen as nn
import jax
import jax.numpy as jnp


class VectorQuantizer(nn.Module):
    codebook_size: int
    decay: float = 0.99
    commitment: float = 0.25

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
        dim = z.shape[-1]
        codebook = self.variable("vq", "codebook",
                                 lambda: jax.random.normal(self.make_rng("params"), (self.codebook_size, dim)))
        # Counts start at one and sums at the codewords, so an unused codeword keeps its place while both decay.
        cluster_size = self.variable("vq", "cluster_size", lambda: jnp.ones((self.codebook_size,)))
        embed_sum = self.variable("vq", "embed_sum", lambda: jnp.copy(codebook.value))
        flat = z.reshape(-1, dim).astype(jnp.float32)
        distances = (jnp.sum(flat ** 2, -1, keepdims=True) - 2 * flat @ codebook.value.T
                     + jnp.sum(codebook.value ** 2, -1))
        onehot = jax.nn.one_hot(jnp.argmin(distances, -1), self.codebook_size)
        quantized = (onehot @ codebook.value).reshape(z.shape)
        if train and not self.is_initializing():
            cluster_size.value = self.decay * cluster_size.value + (1 - self.decay) * onehot.sum(0)
            embed_sum.value = self.decay * embed_sum.value + (1 - self.decay) * onehot.T @ flat
            codebook.value = embed_sum.value / jnp.maximum(cluster_size.value, 1e-5)[:, None]
        self.sow("losses", "vq_commitment", self.commitment * jnp.mean(jnp.square(z - jax.lax.stop_gradient(quantized))))
        usage = onehot.mean(0)
        self.sow("stats", "vq_perplexity", jnp.exp(-jnp.sum(usage * jnp.log(usage + 1e-10))))
        self.sow("stats", "vq_usage", jnp.mean(usage > 0))
        return z + jax.lax.stop_gradient(quantized - z)
