"""Policies learned by regression from observations: BC (to actions) and CLAM stage 2 (to latents)."""
import flax.struct
import jax
import jax.numpy as jnp
import optax

from clam_jax.training.optim import global_norm
from clam_jax.training.sharding import split_batch


@flax.struct.dataclass
class PolicyState:
    step: jax.Array
    rng: jax.Array
    params: dict
    opt_state: optax.OptState


def init_policy(rng, model, tx, example, params=None) -> PolicyState:
    """A fresh state for inputs like `example` (a batch); `params` (e.g. a pretrained network) replace the random
    initialization if given."""
    k_init, k_state = jax.random.split(rng)
    params = model.init(k_init, example) if params is None else params
    return PolicyState(step=jnp.zeros((), jnp.int32), rng=k_state, params=params, opt_state=tx.init(params))


def with_hidden_layers_of(params: dict, source: dict) -> dict:
    """`params` of an MLPPolicy with every layer except the output one copied from `source`, an MLPPolicy
    of the same hidden sizes (LAPA's fine-tuning: a new action head on a pretrained latent policy)."""
    layers, pretrained = params["params"]["MLP_0"], source["params"]["MLP_0"]
    output = f"Dense_{len(layers) - 1}"
    return {"params": {"MLP_0": {name: layers[name] if name == output else pretrained[name] for name in layers}}}


def make_policy_step(model, tx, *, batch_size: int, batch_sharding=None):
    """step(state, data) -> (state, metrics) with data = {"inputs": [M, *obs], "targets": [M, out]} (inputs may
    be dict observations, `clam_jax.data.observations`), or for chunked targets `{"targets": [M, chunk, out],
    "mask": [M, chunk]}` (`clam_jax.rollout.chunking.chunk_targets`): the model's [B, chunk * out] outputs are
    the chunk, and the loss averages over the steps the mask keeps.

    With a `batch_sharding`, the sampled batch is split over its devices (data parallelism).
    """

    def step(state: PolicyState, data):
        index = jax.random.randint(jax.random.fold_in(state.rng, state.step), (batch_size,), 0,
                                   data["targets"].shape[0])
        batch = split_batch(jax.tree.map(lambda x: x[index], data), batch_sharding)
        targets = batch["targets"]

        def loss_fn(params):
            errors = jnp.square(model.apply(params, batch["inputs"]).reshape(targets.shape) - targets)
            if "mask" not in batch:
                return jnp.mean(errors)
            return jnp.sum(errors * batch["mask"][..., None]) / (jnp.sum(batch["mask"]) * targets.shape[-1])

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                              opt_state=opt_state)
        return state, {"loss": loss, "grad_norm": global_norm(grads)}

    return step
