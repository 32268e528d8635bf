"""DynaMo: its two losses on hand-made data, pretraining on a toy problem, and a saved policy with an encoder."""
import jax
import jax.numpy as jnp
import numpy as np

from clam_jax.data.statistics import Normalizer
from clam_jax.data.windows import pad_episodes
from clam_jax.methods import dynamo
from clam_jax.models.lam import MLPPolicy
from clam_jax.models.mlp import MLP
from clam_jax.rollout.saved_policy import load_policy, save_policy
from clam_jax.training.loop import make_multi_step
from clam_jax.training.optim import make_optimizer
from tests.test_clam_step import toy_episodes


def test_covariance_loss_is_the_mean_squared_off_diagonal_covariance_over_feature_dimensions():
    embeddings = np.random.default_rng(0).normal(size=(4, 5, 3)).astype(np.float32)
    covariance = np.cov(embeddings.reshape(20, 3), rowvar=False)  # [3, 3]: features x features
    expected = np.sum(np.square(covariance - np.diag(np.diag(covariance)))) / 6
    np.testing.assert_allclose(dynamo.covariance_loss(jnp.asarray(embeddings)), expected, rtol=1e-5)

    a = np.linspace(-1, 1, 10, dtype=np.float32)
    assert float(dynamo.covariance_loss(jnp.stack([a, -2 * a + 3], axis=-1))) > 0.1  # correlated features
    uncorrelated = jnp.asarray([[1, 1], [1, -1], [-1, 1], [-1, -1]], jnp.float32)
    assert float(dynamo.covariance_loss(uncorrelated)) == 0.0


def test_dynamics_loss_is_cosine_over_the_embedding_axis_with_a_stop_gradient_target():
    target = jnp.asarray([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]])
    assert abs(float(dynamo.dynamics_loss(2.5 * target, target))) < 1e-6  # scale does not matter
    np.testing.assert_allclose(dynamo.dynamics_loss(-target, target), 2.0, rtol=1e-6)
    orthogonal = jnp.asarray([[-2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    np.testing.assert_allclose(dynamo.dynamics_loss(orthogonal, target), 1.0, rtol=1e-6)
    assert not jnp.any(jax.grad(lambda t: dynamo.dynamics_loss(orthogonal, t))(target))
    assert jnp.any(jax.grad(lambda p: dynamo.dynamics_loss(p, target))(orthogonal))


def test_pretraining_lowers_the_dynamics_loss_on_a_learnable_toy_problem():
    observations, _ = toy_episodes(np.random.default_rng(0), 64)
    model = dynamo.DynamicsPretraining(obs_dim=6, embed_dim=16, latent_dim=4, hidden=(64, 64))
    tx = make_optimizer(lr=1e-3, weight_decay=0.0, warmup=10, clip=1.0)
    state = dynamo.init_dynamo(jax.random.key(0), model, tx)
    multi_step = make_multi_step(dynamo.make_dynamo_step(model, tx, batch_size=64, covariance_weight=0.04), 100)
    data = jax.device_put({"observations": pad_episodes(observations, 1, 0)})
    state, first = multi_step(state, data)
    for _ in range(5):
        state, last = multi_step(state, data)
    assert float(last["dynamics_loss"]) < 0.5 * float(first["dynamics_loss"])
    assert float(last["embedding_std"]) > 1e-3 and np.isfinite(float(last["covariance_loss"]))


def test_a_saved_policy_with_an_encoder_acts_through_encoder_then_policy(tmp_path):
    model = dynamo.DynamicsPretraining(obs_dim=6, embed_dim=8, latent_dim=4, hidden=(16,))
    pretrained = model.init(jax.random.key(0), jnp.zeros((1, model.window, 6)))
    encoder = dynamo.encoder_params(pretrained)
    policy = MLPPolicy(out_dim=2, hidden=[16], squash=True)
    policy_params = policy.init(jax.random.key(1), jnp.zeros((1, 8)))
    normalizer = Normalizer(mean=np.full(6, 0.5, np.float32), std=np.full(6, 2.0, np.float32))
    spec = {"normalizer": normalizer.to_dict(), "policy": {"out_dim": 2, "hidden": [16], "squash": True,
                                                           "dtype": "float32"},
            "decoder": None, "encoder": dynamo.encoder_spec(model)}
    save_policy(tmp_path / "policy", {"encoder": encoder, "policy": policy_params}, spec)
    act, _ = load_policy(tmp_path / "policy")

    obs = np.random.default_rng(2).normal(size=(3, 6)).astype(np.float32)
    embedded = model.apply(pretrained, jnp.asarray((obs - 0.5) / 2.0), method=model.embed)
    np.testing.assert_allclose(MLP([16], 8).apply(encoder, (obs - 0.5) / 2.0), embedded, rtol=1e-5)
    np.testing.assert_allclose(act(obs), policy.apply(policy_params, embedded), rtol=1e-5, atol=1e-6)
