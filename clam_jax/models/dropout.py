"""Dropout with the masks of `flax.linen.Dropout`, drawn by a Threefry written out round by round.

JAX lowers its Threefry hash on CPU as a loop over the rounds (to keep compiles short); every
dropout then runs as a loop whose iterations copy the whole counter arrays, and which XLA
cannot fuse with the comparison and the select that use its bits: 6% of a transformer CLAM
step on a 2-core CPU. Written out, the hash is one elementwise expression that XLA fuses
with them, on every backend. For threefry keys (JAX's default) the bits are
`jax.random.bits`'s and the masks `nn.Dropout`'s, bit for bit; other key types go through
`jax.random.bits` itself.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def threefry2x32(key: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011, as `jax.random`) of the counter words x0, x1
    (uint32, same shape) under the key words key [2] (uint32)."""
    ks = (key[0], key[1], key[0] ^ key[1] ^ np.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ ((x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r)))
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def random_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """`jax.random.bits(key, shape)`: uint32 bits, for a threefry key hashed here as JAX's partitionable
    Threefry hashes them (the counter of each element is its index)."""
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    size = int(np.prod(shape))
    partitionable = getattr(jax.config, "jax_threefry_partitionable", True)  # the flag may outlive its choice
    if str(jax.random.key_impl(key)) != "threefry2x32" or not partitionable or size >= 2**32:
        return jax.random.bits(key, shape)
    index = jax.lax.iota(jnp.uint32, size).reshape(shape)
    high, low = threefry2x32(jax.random.key_data(key), jnp.zeros_like(index), index)
    return high ^ low


class Dropout(nn.Dropout):
    """`nn.Dropout` (same attributes, same masks for the same RNG) with bits from `random_bits`."""

    @nn.compact
    def __call__(self, inputs: jax.Array, deterministic: bool | None = None, rng: jax.Array | None = None):
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if self.rate == 0.0 or deterministic:
            return inputs
        if self.rate == 1.0:
            return jnp.zeros_like(inputs)
        keep_prob = 1.0 - self.rate
        if rng is None:
            rng = self.make_rng(self.rng_collection)
        shape = list(inputs.shape)
        for dim in self.broadcast_dims:
            shape[dim] = 1
        # jax.random.uniform's floats in [0, 1): 23 random mantissa bits under the exponent of 1.0.
        mantissa = (random_bits(rng, tuple(shape)) >> np.uint32(9)) | np.uint32(0x3F800000)
        uniform = jax.lax.bitcast_convert_type(mantissa, jnp.float32) - 1.0
        mask = jnp.broadcast_to(uniform < jnp.float32(keep_prob), inputs.shape)
        return jax.lax.select(mask, inputs / keep_prob, jnp.zeros_like(inputs))
