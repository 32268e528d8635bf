import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clam_jax.errors import ConfigError
from clam_jax.models.lam import (ActionDecoder, MLPLatentActionModel, MLPPolicy, TransformerLatentActionModel,
                                 make_latent_action_model)


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


def test_transformer_lam_at_paper_size_has_the_reference_parameter_count():
    # ../shared/bench/torch_ref.py's TransformerCLAM (paper Table 12, 3-frame window): 8,722,487 parameters.
    lam = TransformerLatentActionModel(obs_dim=39, latent_dim=16, context=1)
    params = jax.eval_shape(lam.init, jax.random.key(0), jnp.zeros((1, lam.window, 39)))
    assert sum(x.size for x in jax.tree.leaves(params)) == 8_722_487


def small_transformer(**kwargs):
    return TransformerLatentActionModel(obs_dim=5, latent_dim=3, context=1, future=1, embed_dim=16,
                                        num_heads=2, mlp_dim=32, num_layers=2, **kwargs)


def test_transformer_lam_predicts_every_next_frame_and_reads_z_at_the_current_frame():
    lam = small_transformer()
    window = jax.random.normal(jax.random.key(1), (4, lam.window, 5))
    params = lam.init(jax.random.key(0), window)
    z, predictions = lam.apply(params, window)
    latents = lam.apply(params, window, method=lam.latents)
    assert latents.shape == (4, lam.window - 1, 3) and predictions.shape == (4, lam.window - 1, 5)
    assert jnp.array_equal(z, latents[:, lam.context])
    assert jnp.array_equal(lam.apply(params, window, method=lam.idm), z)
    assert lam.reconstruction_target(window).shape == predictions.shape


def test_transformer_fdm_is_causal_over_observations():
    lam = small_transformer(dropout=0.0)
    window = jax.random.normal(jax.random.key(1), (4, lam.window, 5))
    params = lam.init(jax.random.key(0), window)
    latents = lam.apply(params, window, method=lam.latents)
    observations = window[:, :-1]
    predictions = lam.apply(params, observations, latents, method=lam.fdm)
    for k in range(1, observations.shape[1]):
        changed = lam.apply(params, observations.at[:, k].set(100.0), latents, method=lam.fdm)
        # The prediction of o_{j+1} reads o_0 .. o_j only: changing o_k leaves predictions j < k alone.
        assert jnp.allclose(changed[:, :k], predictions[:, :k], atol=1e-5)
        assert not jnp.allclose(changed[:, k], predictions[:, k])


def test_transformer_dropout_only_in_training_mode():
    lam = small_transformer(dropout=0.5)
    window = jax.random.normal(jax.random.key(1), (4, lam.window, 5))
    params = lam.init(jax.random.key(0), window)
    assert jnp.array_equal(lam.apply(params, window)[1], lam.apply(params, window)[1])
    train = [lam.apply(params, window, train=True, rngs={"dropout": jax.random.key(i)})[1] for i in range(2)]
    assert not jnp.allclose(train[0], train[1])


def test_mlp_idm_with_differences_reads_the_frames_and_their_differences():
    lam = MLPLatentActionModel(obs_dim=3, latent_dim=2, hidden=(8,), context=1, future=1, difference_scale=10.0)
    window = jax.random.normal(jax.random.key(1), (4, lam.window, 3))
    params = lam.init(jax.random.key(0), window)
    assert params["params"]["idm_net"]["Dense_0"]["kernel"].shape == ((2 * lam.window - 1) * 3, 8)
    with pytest.raises(ConfigError, match="difference_scale is an option of the 'mlp' latent action model"):
        make_latent_action_model("transformer", obs_dim=3, latent_dim=2, context=1, future=0, dtype="float32",
                                 transformer=dict(embed_dim=8, num_heads=2, mlp_dim=16, num_layers=1),
                                 difference_scale=10.0)


def test_unknown_lam_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="Unknown latent action model 'rnn'"):
        make_latent_action_model("rnn", obs_dim=3, latent_dim=2, context=1, future=0, dtype="float32")


@pytest.mark.parametrize("kind", ["mlp", "transformer", "space_time"])
def test_the_joint_pass_equals_the_fdm_on_unlabeled_windows_and_the_idm_on_labeled_ones(kind):
    lam = make_latent_action_model(kind, obs_dim=5, latent_dim=3, context=1, future=0, dtype="float32",
                                   hidden=(16,), image_size=16,
                                   transformer=dict(embed_dim=16, num_heads=2, mlp_dim=32, num_layers=2),
                                   space_time=dict(patch_size=8, embed_dim=16, num_heads=2, mlp_dim=32,
                                                   num_layers=2))
    example = lam.example_window()
    windows, labeled = (jax.random.uniform(k, (n, *example.shape[1:]), maxval=255.0).astype(example.dtype)
                        for k, n in zip(jax.random.split(jax.random.key(1)), (4, 2)))
    params = jax.jit(lam.init)(jax.random.key(0), example)
    apply = jax.jit(lam.apply, static_argnames="method")
    predictions, z = apply(params, windows, labeled, method=lam.joint)
    np.testing.assert_allclose(predictions, apply(params, windows)[1], atol=1e-5)
    np.testing.assert_allclose(z, apply(params, labeled, method=lam.idm), atol=1e-5)
