"""The transformer building blocks against plain references: attention with fused projections against Flax's
multi-head attention given the same weights, and a stack of layers against a loop over them."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clam_jax.models.transformer import (SHORT_ATTENTION, Attention, DecoderBlock, DecoderStack, EncoderBlock,
                                         LayerStack, TokenDense, add_positions)

E, HEADS = 16, 2


def flax_weights(params: dict) -> dict:
    """Our attention's parameters (with the memory's `key_value` projection in cross-attention) as
    `nn.MultiHeadDotProductAttention`'s: the fused projections cut apart, the 2-D kernels as its
    [E, heads, head_dim] ([heads, head_dim, E] for the output)."""
    heads = (HEADS, E // HEADS)
    fused = {"qkv": ("query", "key", "value"), "key_value": ("key", "value"), "query": ("query",)}
    cut = {name: {"kernel": params[projection]["kernel"][:, i * E:(i + 1) * E].reshape(E, *heads),
                  "bias": params[projection]["bias"][i * E:(i + 1) * E].reshape(heads)}
           for projection, names in fused.items() if projection in params for i, name in enumerate(names)}
    return {"out": {"kernel": params["out"]["kernel"].reshape(*heads, E), "bias": params["out"]["bias"]}, **cut}


@pytest.mark.parametrize("shape", [(3, E), (3, 5, E)])  # tokens of a state window; frames x patches
def test_add_positions_has_the_gradients_of_a_broadcast_sum(shape):
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    x, weights = jax.random.normal(k1, (4, *shape)), jax.random.normal(k2, (4, *shape))
    positions = jax.random.normal(k3, shape)
    ours = jax.grad(lambda x, p: jnp.sum(weights * add_positions(x, p) ** 2), argnums=(0, 1))(x, positions)
    plain = jax.grad(lambda x, p: jnp.sum(weights * (x + p) ** 2), argnums=(0, 1))(x, positions)
    np.testing.assert_allclose(add_positions(x, positions), x + positions)
    for a, b in zip(ours, plain):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_token_dense_is_flaxs_dense_over_the_last_axis():
    x = jax.random.normal(jax.random.key(0), (2, 3, 4, E))
    params = TokenDense(5).init(jax.random.key(1), x)
    assert jax.tree.map(jnp.shape, params) == {"params": {"kernel": (E, 5), "bias": (5,)}}
    np.testing.assert_allclose(TokenDense(5).apply(params, x), nn.Dense(5).apply(params, x), atol=1e-5)


@pytest.mark.parametrize("keys", [3, SHORT_ATTENTION + 4])  # the broadcast-sum path and the matrix-product path
@pytest.mark.parametrize("cross", [False, True])
def test_attention_equals_flax_multi_head_attention_with_the_same_weights(keys, cross):
    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(k1, (4, keys if not cross else 5, E))
    memory = jax.random.normal(k2, (4, keys, E)) if cross else x
    mask = nn.make_causal_mask(x[..., 0]) if not cross else jnp.ones((4, 1, 5, keys), bool).at[:, :, :, 0].set(False)
    memory_projection = TokenDense(2 * E).init(k4, memory)["params"]  # the caller's, in cross-attention
    key_value = TokenDense(2 * E).apply({"params": memory_projection}, memory) if cross else None
    ours = Attention(HEADS, dropout=0.1)
    params = ours.init(k3, x, key_value)["params"]
    reference = nn.MultiHeadDotProductAttention(num_heads=HEADS, dropout_rate=0.1)
    weights = flax_weights({**params, "key_value": memory_projection} if cross else params)
    expected = reference.apply({"params": weights}, x, memory, mask=mask, deterministic=True)
    np.testing.assert_allclose(ours.apply({"params": params}, x, key_value, mask=mask), expected, atol=1e-5)


def test_attention_projections_are_fused_with_pytorchs_parameter_count():
    x = jnp.zeros((1, 3, E))
    params = Attention(HEADS, dropout=0.0).init(jax.random.key(0), x)["params"]
    assert params["qkv"]["kernel"].shape == (E, 3 * E)
    # torch.nn.MultiheadAttention: in_proj 3E x E + 3E, out_proj E x E + E
    assert sum(p.size for p in jax.tree.leaves(params)) == 4 * E * E + 4 * E


def test_attention_dropout_only_in_training():
    x = jax.random.normal(jax.random.key(1), (2, 3, E))
    attention = Attention(HEADS, dropout=0.5)
    params = attention.init(jax.random.key(0), x)
    assert jnp.array_equal(attention.apply(params, x), attention.apply(params, x))
    trained = [attention.apply(params, x, train=True, rngs={"dropout": jax.random.key(k)}) for k in (1, 2)]
    assert not jnp.allclose(trained[0], trained[1])


@pytest.mark.parametrize("decoder", [False, True])
def test_a_layer_stack_equals_a_loop_over_its_layers(decoder):
    """`LayerStack` of encoder blocks; `DecoderStack`, whose one projection of the memory gives every layer the
    keys and values its own slice of the kernel gives."""
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    x, memory = jax.random.normal(k1, (2, 3, E)), jax.random.normal(k2, (2, 3, E))
    mask = nn.make_causal_mask(x[..., 0])
    attributes = dict(num_heads=HEADS, mlp_dim=32, dropout=0.1)
    stack, block, args = ((DecoderStack(3, attributes), DecoderBlock, (memory, mask, None)) if decoder else
                          (LayerStack(EncoderBlock, 3, attributes), EncoderBlock, (mask,)))
    params = stack.init(k3, x, *args, False)["params"]
    assert all(p.shape[0] == 3 for p in jax.tree.leaves(params["layers"]))

    def layer_args(i: int) -> tuple:
        """The block's arguments before `train` in layer i."""
        if not decoder:
            return args
        projection = jax.tree.map(lambda p: p[..., 2 * E * i:2 * E * (i + 1)], params["memory_key_value"])
        return nn.Dense(2 * E).apply({"params": projection}, memory), mask, None

    layer = jax.jit(lambda p, x, i: block(**attributes).apply({"params": p}, x, *layer_args(i), False),
                    static_argnums=2)
    expected = x
    for i in range(3):
        expected = layer(jax.tree.map(lambda p: p[i], params["layers"]), expected, i)
    apply = jax.jit(lambda x, key, train: stack.apply({"params": params}, x, *args, train, rngs={"dropout": key}),
                    static_argnums=2)
    np.testing.assert_allclose(apply(x, jax.random.key(1), False), expected, atol=1e-5)
    assert not jnp.allclose(apply(x, jax.random.key(1), True), apply(x, jax.random.key(2), True))
