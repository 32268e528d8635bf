"""Soft actor-critic, the online agent whose replay buffer becomes the locomotion datasets.

Haarnoja et al. 2018 with a learned temperature (target entropy -|A|): a
tanh-squashed Gaussian actor, two critics whose minimum is the target, and
Polyak-averaged target critics. `SAC` holds the hyperparameters; its methods are
pure functions of an `SACState`, so `update` scans under `jit`
(`clam_jax.envs.agent` runs one scanned chunk of updates per collected episode).
"""
import dataclasses
from typing import Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from clam_jax.models.mlp import MLP

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class GaussianActor(nn.Module):
    """obs -> (mean, log_std) of the Gaussian that tanh squashes into [-1, 1]."""

    hidden: Sequence[int]
    action_dim: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean, raw = jnp.split(MLP(self.hidden, 2 * self.action_dim)(obs), 2, axis=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(raw) + 1.0)
        return mean, log_std


class DoubleCritic(nn.Module):
    """(obs, action) -> Q-values of two independent critics, [2, B]."""

    hidden: Sequence[int]

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        return jnp.stack([MLP(self.hidden, 1)(x)[..., 0] for _ in range(2)])


def squashed_sample(mean: jax.Array, log_std: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """An action tanh(mean + std * eps) and its log-density (with the tanh change of variables)."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    gaussian = -0.5 * jnp.square((u - mean) / jnp.exp(log_std)) - log_std - 0.5 * jnp.log(2 * jnp.pi)
    log_det = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))  # log(1 - tanh(u)^2), stable
    return jnp.tanh(u), jnp.sum(gaussian - log_det, axis=-1)


@flax.struct.dataclass
class SACState:
    step: jax.Array
    rng: jax.Array
    actor_params: dict
    critic_params: dict
    target_critic_params: dict
    log_alpha: jax.Array
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState


@dataclasses.dataclass(frozen=True)
class SAC:
    obs_dim: int
    action_dim: int
    hidden: tuple[int, ...] = (256, 256)
    lr: float = 3e-4
    discount: float = 0.99
    tau: float = 0.005
    init_temperature: float = 0.1

    @property
    def actor(self) -> GaussianActor:
        return GaussianActor(tuple(self.hidden), self.action_dim)

    @property
    def critic(self) -> DoubleCritic:
        return DoubleCritic(tuple(self.hidden))

    @property
    def tx(self) -> optax.GradientTransformation:
        return optax.adam(self.lr)

    def init(self, rng: jax.Array) -> SACState:
        k_actor, k_critic, k_state = jax.random.split(rng, 3)
        obs, action = jnp.zeros((1, self.obs_dim)), jnp.zeros((1, self.action_dim))
        actor_params = self.actor.init(k_actor, obs)
        critic_params = self.critic.init(k_critic, obs, action)
        log_alpha = jnp.log(jnp.asarray(self.init_temperature, jnp.float32))
        return SACState(step=jnp.zeros((), jnp.int32), rng=k_state, actor_params=actor_params,
                        critic_params=critic_params, log_alpha=log_alpha,
                        target_critic_params=jax.tree.map(jnp.copy, critic_params),  # own buffers: donated apart
                        actor_opt_state=self.tx.init(actor_params), critic_opt_state=self.tx.init(critic_params),
                        alpha_opt_state=self.tx.init(log_alpha))

    def act(self, actor_params: dict, obs: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array:
        """Actions in [-1, 1] for a batch of observations: sampled, or the mean's tanh if `deterministic`."""
        mean, log_std = self.actor.apply(actor_params, obs)
        return jnp.tanh(mean) if deterministic else squashed_sample(mean, log_std, key)[0]

    def update(self, state: SACState, batch: dict) -> tuple[SACState, dict]:
        """One critic, actor, temperature and target update on `batch` = {obs, action, reward, next_obs,
        discount} (discount 0 where an episode terminated, 1 where it continues or was cut by a time limit)."""
        k_next, k_actor = jax.random.split(jax.random.fold_in(state.rng, state.step))
        alpha = jnp.exp(state.log_alpha)
        next_action, next_log_prob = squashed_sample(*self.actor.apply(state.actor_params, batch["next_obs"]),
                                                     k_next)
        next_q = jnp.min(self.critic.apply(state.target_critic_params, batch["next_obs"], next_action), axis=0)
        target = batch["reward"] + self.discount * batch["discount"] * (next_q - alpha * next_log_prob)
        target = jax.lax.stop_gradient(target)

        def critic_loss(params):
            q = self.critic.apply(params, batch["obs"], batch["action"])
            return jnp.mean(jnp.sum(jnp.square(q - target[None]), axis=0)), jnp.mean(q)

        (c_loss, q_mean), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(state.critic_params)
        c_updates, critic_opt_state = self.tx.update(c_grads, state.critic_opt_state)
        critic_params = optax.apply_updates(state.critic_params, c_updates)

        def actor_loss(params):
            action, log_prob = squashed_sample(*self.actor.apply(params, batch["obs"]), k_actor)
            q = jnp.min(self.critic.apply(critic_params, batch["obs"], action), axis=0)
            return jnp.mean(alpha * log_prob - q), log_prob

        (a_loss, log_prob), a_grads = jax.value_and_grad(actor_loss, has_aux=True)(state.actor_params)
        a_updates, actor_opt_state = self.tx.update(a_grads, state.actor_opt_state)
        entropy_gap = jax.lax.stop_gradient(jnp.mean(log_prob)) - self.action_dim  # E[log pi] + target entropy
        alpha_grad = -entropy_gap  # d/d(log_alpha) of -log_alpha * (E[log pi] - |A|)
        alpha_updates, alpha_opt_state = self.tx.update(alpha_grad, state.alpha_opt_state)
        target_critic_params = optax.incremental_update(critic_params, state.target_critic_params, self.tau)
        state = state.replace(
            step=state.step + 1, actor_params=optax.apply_updates(state.actor_params, a_updates),
            critic_params=critic_params, target_critic_params=target_critic_params,
            log_alpha=optax.apply_updates(state.log_alpha, alpha_updates), actor_opt_state=actor_opt_state,
            critic_opt_state=critic_opt_state, alpha_opt_state=alpha_opt_state)
        return state, {"critic_loss": c_loss, "actor_loss": a_loss, "q": q_mean, "alpha": alpha,
                       "entropy": -jnp.mean(log_prob)}
