"""Our dropout against Flax's: the same random bits as `jax.random.bits`, the same masks as `nn.Dropout`."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clam_jax.models.dropout import Dropout, random_bits, threefry2x32

SHAPES = [(), (7,), (64, 3, 2048), (5, 1, 3)]


@pytest.mark.parametrize("shape", SHAPES)
def test_random_bits_are_jax_random_bits(shape):
    for key in [jax.random.key(3), jax.random.split(jax.random.key(0))[1], jax.random.PRNGKey(11)]:
        np.testing.assert_array_equal(jax.jit(random_bits, static_argnums=1)(key, shape),
                                      jax.random.bits(key, shape))


@pytest.mark.parametrize("key, counter, expected", [  # Random123's known answers for 20 rounds, as JAX's tests
    ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0))])
def test_threefry_gives_the_published_known_answers(key, counter, expected):
    words = [np.array([w], np.uint32) for w in counter]
    np.testing.assert_array_equal(np.concatenate(threefry2x32(np.array(key, np.uint32), *words)),
                                  np.array(expected, np.uint32))


def test_other_key_types_fall_back_to_jax():
    key = jax.random.key(5, impl="rbg")
    np.testing.assert_array_equal(random_bits(key, (4, 3)), jax.random.bits(key, (4, 3)))


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("broadcast_dims", [(), (1,), (-1,)])
def test_dropout_equals_flax_dropout(rate, broadcast_dims):
    x = jax.random.normal(jax.random.key(1), (8, 3, 16))
    rngs = {"dropout": jax.random.key(2)}
    for deterministic in (False, True):
        ours = Dropout(rate, broadcast_dims).apply({}, x, deterministic, rngs=rngs)
        theirs = nn.Dropout(rate, broadcast_dims).apply({}, x, deterministic, rngs=rngs)
        np.testing.assert_array_equal(ours, theirs)
    dropped = float(jnp.mean(Dropout(rate).apply({}, jnp.ones((64, 3, 2048)), False, rngs=rngs) == 0))
    assert abs(dropped - rate) < 0.01
