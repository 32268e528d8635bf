"""CLAM stage 1: latent action model and action decoder trained jointly (paper section 3.1).

One unified step takes an unlabeled batch (reconstruction loss, every step) and
a labeled batch (decoder loss, weight beta, every K-th step). On decoder steps
the decoder's gradient reaches the IDM through z, which is what grounds the
latent space in real actions. The LAM and the decoder have separate AdamW
optimizers with their own clipping (paper Appendix D).
"""
import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.traverse_util import flatten_dict

from clam_jax.data.observations import first_leaf
from clam_jax.data.windows import all_windows, num_transitions, sample_windows
from clam_jax.models.lam import ActionDecoder
from clam_jax.training.optim import global_norm
from clam_jax.training.sharding import split_batch


@flax.struct.dataclass
class Stage1State:
    step: jax.Array
    rng: jax.Array
    lam_params: dict
    decoder_params: dict
    lam_opt_state: optax.OptState
    decoder_opt_state: optax.OptState


def init_stage1(rng, lam, decoder: ActionDecoder, lam_tx, decoder_tx) -> Stage1State:
    """`lam_params` holds the LAM's variables: "params", and "vq" (the EMA codebook) for discrete latents;
    the optimizer updates "params" only."""
    k_lam, k_dec, k_state = jax.random.split(rng, 3)
    variables = lam.init(k_lam, lam.example_window())
    lam_params = {k: v for k, v in variables.items() if k in ("params", "vq")}
    decoder_params = decoder.init(k_dec, jnp.zeros((1, lam.latent_dim)))
    return Stage1State(
        step=jnp.zeros((), jnp.int32), rng=k_state, lam_params=lam_params, decoder_params=decoder_params,
        lam_opt_state=lam_tx.init(lam_params["params"]), decoder_opt_state=decoder_tx.init(decoder_params))


def _mse(a, b):
    """Mean squared error, summed over the parts of dict observations (`clam_jax.data.observations`)."""
    return sum(jnp.mean(jnp.square(x - y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def sample_stage1_batch(key, data, *, batch_size: int, labeled_batch_size: int, window: int) -> dict:
    """One stage-1 batch from device-resident padded episodes (see `clam_jax.data.windows`).

    `data` = {"unlabeled": padded observations, "labeled": padded observations,
    "labeled_actions": [N, T + 1, A]}; returns {"unlabeled": [B, W, D],
    "labeled": [B_l, W, D], "labeled_actions": [B_l, A]}.
    """
    k_unlabeled, k_labeled = jax.random.split(key)
    labeled, episode, t = sample_windows(k_labeled, data["labeled"], labeled_batch_size, window)
    return {"unlabeled": sample_windows(k_unlabeled, data["unlabeled"], batch_size, window)[0],
            "labeled": labeled, "labeled_actions": data["labeled_actions"][episode, t]}


def make_stage1_update(lam, decoder: ActionDecoder, lam_tx, decoder_tx, *, decoder_every: int, beta: float,
                       joint: bool = True, batch_sharding=None):
    """Returns update(state, batch, phase=None) -> (state, metrics) for a batch shaped as
    `sample_stage1_batch`'s.

    The decoder step comes every `decoder_every`-th step: when `phase` (the step's
    place in that period, a Python int) is given, at phase 0, fixed when tracing;
    else chosen at run time from the state's step counter (`lax.cond`). Scanned
    loops give the phase (`clam_jax.training.loop.scan_steps` with
    `period=decoder_every`): under a seed axis `lax.cond` computes both branches.

    The joint step encodes the unlabeled and the labeled windows in one IDM
    pass (`lam.joint`); with discrete latents, the codebook's EMA update and
    commitment loss then cover both batches.
    `joint=False` trains the LAM by reconstruction alone (the decoder is fitted
    afterwards on frozen latents: the paper's "separate" ablation, as LAPO does).
    With a `batch_sharding`, the batch is split over its devices (data parallelism).
    """
    current = lam.context

    def apply_lam(variables, key, *windows, method=None):
        """A training-mode LAM call: (outputs, its "vq" collection after the EMA update, extra losses, stats)."""
        out, collections = lam.apply(variables, *windows, train=True, rngs={"dropout": key}, method=method,
                                     mutable=["vq", "losses", "stats"])
        extra = sum(jnp.sum(x) for x in jax.tree.leaves(collections.get("losses", {})))
        stats = {path[-1]: jnp.mean(jnp.stack(values)) for path, values in flatten_dict(
            collections.get("stats", {}), is_leaf=lambda _, x: isinstance(x, tuple)).items()}
        return out, collections.get("vq"), extra, stats

    def reconstruction(params, variables, windows, key):
        (_, prediction), vq, extra, stats = apply_lam({**variables, "params": params}, key, windows)
        recon = _mse(prediction, lam.reconstruction_target(windows))
        return recon + extra, (recon, vq, stats)

    def updated_lam(state, grads, vq):
        updates, lam_opt_state = lam_tx.update(grads, state.lam_opt_state, state.lam_params["params"])
        lam_params = {**state.lam_params, "params": optax.apply_updates(state.lam_params["params"], updates)}
        if vq is not None:
            lam_params["vq"] = vq
        return state.replace(lam_params=lam_params, lam_opt_state=lam_opt_state)

    def update(state: Stage1State, batch, phase: int | None = None):
        batch = split_batch(batch, batch_sharding)
        windows = batch["unlabeled"]
        key = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), 2)
        frames = lam.frames(windows)
        cheat = _mse(*(jax.tree.map(lambda x: x[:, step], frames) for step in (current, current + 1)))

        def reconstruction_step(state):
            (_, (recon, vq, stats)), grads = jax.value_and_grad(reconstruction, has_aux=True)(
                state.lam_params["params"], state.lam_params, windows, key)
            return updated_lam(state, grads, vq), {
                "loss": recon, "recon_loss": recon, "decoder_loss": jnp.nan,
                "lam_grad_norm": global_norm(grads), "decoder_grad_norm": jnp.nan, **stats}

        def joint_step(state):
            def loss_fn(params, decoder_params):
                (prediction, z), vq, extra, stats = apply_lam({**state.lam_params, "params": params}, key, windows,
                                                              batch["labeled"], method=lam.joint)
                recon = _mse(prediction, lam.reconstruction_target(windows))
                decoded = _mse(decoder.apply(decoder_params, z), batch["labeled_actions"])
                return recon + extra + beta * decoded, (recon, decoded, vq, stats)

            (loss, (recon, decoded, vq, stats)), (lam_grads, decoder_grads) = jax.value_and_grad(
                loss_fn, argnums=(0, 1), has_aux=True)(state.lam_params["params"], state.decoder_params)
            decoder_updates, decoder_opt_state = decoder_tx.update(
                decoder_grads, state.decoder_opt_state, state.decoder_params)
            state = updated_lam(state, lam_grads, vq).replace(
                decoder_params=optax.apply_updates(state.decoder_params, decoder_updates),
                decoder_opt_state=decoder_opt_state)
            return state, {"loss": recon + beta * decoded, "recon_loss": recon, "decoder_loss": decoded,
                           "lam_grad_norm": global_norm(lam_grads),
                           "decoder_grad_norm": global_norm(decoder_grads), **stats}

        if not joint:
            state, metrics = reconstruction_step(state)
        elif phase is None:
            state, metrics = jax.lax.cond(state.step % decoder_every == 0, joint_step, reconstruction_step, state)
        else:
            state, metrics = (joint_step if phase == 0 else reconstruction_step)(state)
        metrics["cheat_loss"] = cheat
        return state.replace(step=state.step + 1), metrics

    return update


def make_stage1_step(lam, decoder: ActionDecoder, lam_tx, decoder_tx, *, batch_size: int,
                     labeled_batch_size: int, decoder_every: int, beta: float, joint: bool = True,
                     batch_sharding=None):
    """Returns step(state, data, phase=None) -> (state, metrics): samples a batch from device-resident
    `data` (see `sample_stage1_batch`) with the state's RNG and applies `make_stage1_update`."""
    update = make_stage1_update(lam, decoder, lam_tx, decoder_tx, decoder_every=decoder_every, beta=beta,
                                joint=joint, batch_sharding=batch_sharding)

    def step(state: Stage1State, data, phase: int | None = None):
        batch = sample_stage1_batch(jax.random.fold_in(state.rng, state.step), data, batch_size=batch_size,
                                    labeled_batch_size=labeled_batch_size, window=lam.window)
        return update(state, batch, phase)

    return step


def map_windows(fn, params, padded, window: int, *, batch_size: int) -> np.ndarray:
    """`fn(params, windows [B, window, ...]) -> [B, ...]` for every transition of padded episodes (an array or
    dict observations): [N, T, ...].

    Runs over fixed-size chunks of episodes (the last chunk padded) so one
    compiled program serves the whole dataset.
    """
    n, steps = first_leaf(padded).shape[0], num_transitions(padded, window)
    chunk = max(1, batch_size // steps)

    @jax.jit
    def apply(params, episodes):
        out = fn(params, all_windows(episodes, window))
        return out.reshape(chunk, steps, *out.shape[1:])

    def filled(part):
        return np.concatenate([part, np.repeat(part[-1:], chunk - len(part), axis=0)])

    out = []
    for start in range(0, n, chunk):
        part = jax.tree.map(lambda x: x[start:start + chunk], padded)
        out.append(np.asarray(apply(params, jax.tree.map(filled, part)))[: len(first_leaf(part))])
    return np.concatenate(out)


def relabel(lam, lam_params, padded, *, batch_size: int) -> np.ndarray:
    """Latent actions z_t for every transition of padded episodes: [N, T, latent_dim] (the frozen IDM)."""
    return map_windows(functools.partial(lam.apply, method=lam.idm), lam_params, padded, lam.window,
                       batch_size=batch_size)


def latents_and_errors(lam, lam_params, padded, *, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """In one pass over every transition of padded episodes: the latents z_t [N, T, latent_dim] (as `relabel`)
    and [N, T, 2] the FDM's reconstruction error (as the stage-1 loss) and the cheat loss MSE(o_t, o_{t+1}) of
    copying the current frame (paper Table 9's comparison)."""
    current = lam.context

    def latents_then_errors(params, windows):
        z, prediction = lam.apply(params, windows)
        target, frames = lam.reconstruction_target(windows), lam.frames(windows)
        per_window = jax.vmap(_mse)
        cheat = per_window(*(jax.tree.map(lambda x: x[:, step], frames) for step in (current, current + 1)))
        return jnp.concatenate([z, per_window(prediction, target)[:, None], cheat[:, None]], axis=-1)

    out = map_windows(latents_then_errors, lam_params, padded, lam.window, batch_size=batch_size)
    return out[..., :-2], out[..., -2:]


def decoded_actions(lam, decoder, lam_params, decoder_params, padded, *, batch_size: int) -> np.ndarray:
    """decoder(IDM(transition)) for every transition of padded episodes: [N, T, action_dim]."""
    latents = relabel(lam, lam_params, padded, batch_size=batch_size)
    return np.asarray(jax.jit(functools.partial(decoder.apply, decoder_params))(latents))


def decoder_error(lam, decoder, lam_params, decoder_params, padded, actions, *, batch_size: int) -> float:
    """MSE of decoder(IDM(transition)) against the true actions of padded episodes."""
    decoded = decoded_actions(lam, decoder, lam_params, decoder_params, padded, batch_size=batch_size)
    return float(jnp.mean(jnp.square(decoded - actions[:, : decoded.shape[1]])))
