"""DynaMo (Cui et al. 2024) for states: dynamics pretraining of an observation encoder (paper Appendix I).

An encoder embeds every frame of a window; an inverse dynamics model infers a
latent z_t from the embedded window, and a forward dynamics model predicts the
embedding of o_{t+1} from the embeddings of o[t-H .. t] and z_t. The loss is
one minus the cosine similarity between prediction and the stop-gradient
embedding of o_{t+1} (over the embedding axis), plus a regularizer on the
off-diagonal entries of the embeddings' covariance over feature dimensions
(estimated across the batch). The encoder is then frozen and a BC policy is
trained on its embeddings of D_labeled.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from clam_jax.data.windows import sample_windows, window_length
from clam_jax.methods.policy import PolicyState, init_policy
from clam_jax.models.mlp import MLP
from clam_jax.training.optim import global_norm
from clam_jax.training.sharding import split_batch


class DynamicsPretraining(nn.Module):
    """Encoder, latent IDM and FDM over embeddings; windows as the LAM's (`clam_jax.models.lam`)."""

    obs_dim: int
    embed_dim: int
    latent_dim: int
    hidden: Sequence[int]
    context: int = 1
    future: int = 0
    dtype: Any = "float32"

    @property
    def window(self) -> int:
        return window_length(self.context, self.future)

    def setup(self):
        self.encoder = MLP(self.hidden, self.embed_dim, self.dtype)
        self.idm_net = MLP(self.hidden, self.latent_dim, self.dtype)
        self.fdm_net = MLP(self.hidden, self.embed_dim, self.dtype)

    def embed(self, observations: jax.Array) -> jax.Array:
        """[..., obs_dim] -> [..., embed_dim]."""
        return self.encoder(observations)

    def __call__(self, window: jax.Array) -> tuple[jax.Array, jax.Array]:
        """window [B, W, obs_dim] -> (embeddings [B, W, embed_dim], predicted embedding of o_{t+1} [B, embed_dim])."""
        embeddings = self.embed(window)
        batch = window.shape[0]
        z = self.idm_net(embeddings.reshape(batch, -1))
        past = embeddings[:, : self.context + 1].reshape(batch, -1)
        return embeddings, self.fdm_net(jnp.concatenate([past, z], axis=-1))


def init_dynamo(rng, model: DynamicsPretraining, tx) -> PolicyState:
    k_init, k_state = jax.random.split(rng)
    params = model.init(k_init, jnp.zeros((1, model.window, model.obs_dim)))
    return init_policy(k_state, model, tx, jnp.zeros((1, model.obs_dim)), params=params)


def encoder_spec(model: DynamicsPretraining) -> dict:
    """The keyword arguments of the `MLP` that computes `model.embed` on its own (for saved policies)."""
    return {"hidden": list(model.hidden), "out_dim": model.embed_dim, "dtype": model.dtype}


def encoder_params(params: dict) -> dict:
    """The variables of that standalone encoder `MLP`, cut from the pretraining model's."""
    return {"params": params["params"]["encoder"]}


def dynamics_loss(prediction: jax.Array, target: jax.Array) -> jax.Array:
    """1 - cosine similarity over the embedding axis, the target under stop-gradient; mean over the batch."""
    target = jax.lax.stop_gradient(target)
    cosine = jnp.sum(prediction * target, axis=-1) / (
        jnp.linalg.norm(prediction, axis=-1) * jnp.linalg.norm(target, axis=-1) + 1e-8)
    return 1.0 - jnp.mean(cosine)


def covariance_loss(embeddings: jax.Array) -> jax.Array:
    """Mean squared off-diagonal entry of the [E, E] covariance of embeddings [..., E] over all samples."""
    x = embeddings.reshape(-1, embeddings.shape[-1])
    x = x - jnp.mean(x, axis=0)
    covariance = x.T @ x / (x.shape[0] - 1)
    dim = covariance.shape[0]
    off_diagonal = covariance * (1.0 - jnp.eye(dim))
    return jnp.sum(jnp.square(off_diagonal)) / (dim * (dim - 1))


def make_dynamo_step(model: DynamicsPretraining, tx, *, batch_size: int, covariance_weight: float,
                     batch_sharding=None):
    """step(state, data) -> (state, metrics); `data` = {"observations": padded episodes [N, T', D]}.

    `embedding_std` (mean over features of the batch std) is logged to show whether
    the embeddings collapse, which nothing in the loss fully prevents.
    """

    def step(state: PolicyState, data):
        windows, _, _ = sample_windows(jax.random.fold_in(state.rng, state.step), data["observations"],
                                       batch_size, model.window)
        windows = split_batch(windows, batch_sharding)

        def loss_fn(params):
            embeddings, prediction = model.apply(params, windows)
            dynamics = dynamics_loss(prediction, embeddings[:, model.context + 1])
            covariance = covariance_loss(embeddings)
            return dynamics + covariance_weight * covariance, (dynamics, covariance, embeddings)

        (loss, (dynamics, covariance, embeddings)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                              opt_state=opt_state)
        std = jnp.mean(jnp.std(embeddings.reshape(-1, embeddings.shape[-1]), axis=0))
        return state, {"loss": loss, "dynamics_loss": dynamics, "covariance_loss": covariance,
                       "embedding_std": std, "grad_norm": global_norm(grads)}

    return step
