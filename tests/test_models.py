import jax
import jax.numpy as jnp

from clam_jax.models.lam import ActionDecoder, MLPLatentActionModel, MLPPolicy


def test_lam_shapes():
    lam = MLPLatentActionModel(obs_dim=39, latent_dim=16, hidden=(32, 32), context=2, future=1)
    window = jnp.zeros((5, lam.window, 39))
    params = lam.init(jax.random.key(0), window)
    z, prediction = lam.apply(params, window)
    assert lam.window == 5 and z.shape == (5, 16) and prediction.shape == (5, 39)
    assert lam.apply(params, window, method=lam.idm).shape == (5, 16)


def test_prediction_sees_the_next_frame_only_through_z():
    lam = MLPLatentActionModel(obs_dim=3, latent_dim=2, hidden=(8,), context=1)
    window = jax.random.normal(jax.random.key(1), (4, 3, 3))
    params = lam.init(jax.random.key(0), window)
    z, prediction = lam.apply(params, window)
    changed = window.at[:, 2].set(100.0)
    same = lam.apply(params, changed[:, :2], z, method=lam.fdm)
    assert jnp.allclose(prediction, same)
    assert not jnp.allclose(lam.apply(params, changed)[1], prediction)


def test_decoder_and_policy_shapes_and_ranges():
    decoder = ActionDecoder(action_dim=4, embed_dim=8, hidden=(16, 16))
    z = 100 * jax.random.normal(jax.random.key(0), (7, 16))
    actions = decoder.apply(decoder.init(jax.random.key(1), z), z)
    assert actions.shape == (7, 4) and jnp.all(jnp.abs(actions) <= 1)
    policy = MLPPolicy(out_dim=16, hidden=(32,))
    obs = jnp.ones((7, 39))
    assert policy.apply(policy.init(jax.random.key(2), obs), obs).shape == (7, 16)


def test_mixed_precision_computes_in_bfloat16_and_returns_float32():
    lam = MLPLatentActionModel(obs_dim=39, latent_dim=16, hidden=(32,), dtype="bfloat16")
    window = jnp.ones((2, lam.window, 39))
    params = lam.init(jax.random.key(0), window)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    assert "bf16" in str(jax.make_jaxpr(lam.apply)(params, window))
    z, prediction = lam.apply(params, window)
    assert z.dtype == prediction.dtype == jnp.float32
