"""Vector quantization of latent actions with EMA codebooks (the discrete-latent baselines: LAPO, LAPA).

As in LAPO's implementation (which the paper reuses): a latent z of D dims is
cut into `num_codebooks` x `tokens` vectors of D / (num_codebooks * tokens)
dims, and the tokens of codebook c are each replaced by the nearest of its
`codebook_size` codewords, so a latent is one of codebook_size^(num_codebooks *
tokens) values. Codebooks live in the "vq" collection and follow exponential
moving averages of the vectors assigned to each codeword (with Laplace-smoothed
counts), updated when the module runs with `train=True` and
`mutable=["vq", ...]`. The encoder gets the straight-through gradient of the
quantized output plus the commitment loss `commitment * ||z - sg(q)||^2`, sown
into the "losses" collection; codebook perplexity (mean over codebooks) and the
share of codewords in use go to "stats".
"""
import flax.linen as nn
import jax
import jax.numpy as jnp


class VectorQuantizer(nn.Module):
    codebook_size: int
    num_codebooks: int = 1
    tokens: int = 1
    decay: float = 0.999
    commitment: float = 0.05
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
        n, m = self.num_codebooks, self.codebook_size
        if z.shape[-1] % (n * self.tokens):
            raise ValueError(f"A latent of {z.shape[-1]} dims does not split into {n} codebooks x {self.tokens} "
                             "tokens; make the latent dimension a multiple of their product.")
        dim = z.shape[-1] // (n * self.tokens)
        codebook = self.variable("vq", "codebook", lambda: jax.random.uniform(
            self.make_rng("params"), (n, m, dim), minval=-5.0 / m, maxval=5.0 / m))
        count = self.variable("vq", "count", lambda: jnp.zeros((n, m)))
        weight = self.variable("vq", "weight", lambda: jnp.copy(codebook.value))
        # [n, vectors, dim]: every token of codebook c, over the batch.
        x = jnp.moveaxis(z.reshape(-1, n, self.tokens, dim).astype(jnp.float32), 1, 0).reshape(n, -1, dim)
        distances = (jnp.sum(x ** 2, -1, keepdims=True) - 2 * jnp.einsum("nvd,nmd->nvm", x, codebook.value)
                     + jnp.sum(codebook.value ** 2, -1)[:, None])
        onehot = jax.nn.one_hot(jnp.argmin(distances, -1), m)  # [n, vectors, m]
        quantized = jnp.einsum("nvm,nmd->nvd", onehot, codebook.value)
        if train and not self.is_initializing():
            updated = self.decay * count.value + (1 - self.decay) * onehot.sum(1)
            total = updated.sum(-1, keepdims=True)
            count.value = (updated + self.epsilon) / (total + m * self.epsilon) * total
            weight.value = self.decay * weight.value + (1 - self.decay) * jnp.einsum("nvm,nvd->nmd", onehot, x)
            codebook.value = weight.value / count.value[..., None]
        quantized = jnp.moveaxis(quantized.reshape(n, -1, self.tokens, dim), 0, 1).reshape(z.shape)
        commitment = self.commitment * jnp.mean(jnp.square(z - jax.lax.stop_gradient(quantized)))
        self.sow("losses", "vq_commitment", commitment)
        usage = onehot.mean(1)  # [n, m]
        self.sow("stats", "vq_perplexity", jnp.mean(jnp.exp(-jnp.sum(usage * jnp.log(usage + 1e-10), -1))))
        self.sow("stats", "vq_usage", jnp.mean(usage > 0))
        return z + jax.lax.stop_gradient(quantized - z)
