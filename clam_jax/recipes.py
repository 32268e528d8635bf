"""Each method's recipe, from the datasets to a saved policy in `<workdir>/<method>/policy`.

CLAM (stage 1, relabelling, stage 2), LAPO (CLAM with quantized latents and the
decoder fitted afterwards), BC on D_labeled (`bc`) or, privileged, on the expert
episodes' true actions (`bc_expert`), VPT (an IDM fitted to D_labeled labels the
expert episodes for BC), LAPA (quantized-latent pretraining, then fine-tuning on
D_labeled) and DynaMo (BC on D_labeled over an encoder pretrained by latent
dynamics); and an ablation, `clam_decoded` (BC on CLAM's decoded labels). A
recipe takes the runs of one group (`clam_jax.stages.Run`, the same
config but for the seed), trains those without a saved policy together, and
records each stage in every run's `<workdir>/<method>/summary.json`; its stages
resume from their checkpoints.
"""
import copy
import dataclasses
import functools
import time

import jax
import ml_collections
import numpy as np

from clam_jax.envs.tasks import task_dims
from clam_jax.methods import clam, dynamo
from clam_jax.methods.policy import with_hidden_layers_of
from clam_jax.models.lam import MLPPolicy
from clam_jax.models.mlp import MLP
from clam_jax.models.policies import make_policy, with_idm_encoder
from clam_jax.rollout.saved_policy import policy_exists, save_policy
from clam_jax.stages import (Run, decoder_spec, episode_actions, flat_windows, lam_and_decoder, last_metrics,
                             on_host, policy_model, policy_spec, policy_targets, seeded_program, train_regression,
                             train_stage, train_stage1, transition_actions, transition_observations)
from clam_jax.training.optim import make_optimizer
from clam_jax.training.sharding import batch_split

# The dataset each BC method imitates (observations and true actions).
_POLICY_DATA = {"bc": "labeled", "bc_expert": "expert"}


def _untrained(runs: list[Run], method: str) -> list[Run]:
    return [run for run in runs if not policy_exists(run.workdir / method / "policy")]


def _record(runs: list[Run], method: str, stage: str, start: float, entries: list[dict] | None = None) -> None:
    """Records `stage` in the log of every run that has no record of it yet (a resumed run keeps the first):
    the group's wall time since `start`, plus that run's entry."""
    wall_time = time.perf_counter() - start
    for i, run in enumerate(runs):
        log = run.log(method)
        if not log.done(stage):
            log.record(stage, {"wall_time_s": wall_time, **(entries[i] if entries else {})})


def _with_config(runs: list[Run], change) -> list[Run]:
    """The runs with `change(config)` applied to a copy of each config."""
    changed = []
    for run in runs:
        config = copy.deepcopy(run.config)
        change(config)
        changed.append(dataclasses.replace(run, config=config))
    return changed


def train_separate_decoder(runs: list[Run], mesh, method: str, lam, decoder, lam_params: list) -> list:
    """The decoder trained after the LAM, on the frozen IDM's latents of D_labeled (`stage1.joint=False`)."""
    s1 = runs[0].config.stage1
    latents = [clam.relabel(lam, params, run.padded("labeled"), batch_size=run.config.train.relabel_batch_size)
               for run, params in zip(runs, lam_params)]
    actions = [run.datasets["labeled"].actions[:, : z.shape[1]] for run, z in zip(runs, latents)]
    hparams = ml_collections.ConfigDict(dict(
        lr=s1.decoder_lr, weight_decay=s1.decoder_weight_decay, warmup=s1.warmup, clip=s1.clip,
        batch_size=s1.labeled_batch_size, steps=s1.separate_decoder_steps))
    states = train_regression(runs, mesh, method, "decoder", decoder, [z.reshape(-1, z.shape[-1]) for z in latents],
                              [a.reshape(-1, a.shape[-1]) for a in actions], hparams=hparams, seed_offset=3)
    return [state.params for state in states]


def clam_stage1(runs: list[Run], mesh, method: str) -> tuple[list, list]:
    """CLAM's stage 1 under `<workdir>/<method>/` (the decoder fitted afterwards when `stage1.joint=False`):
    the LAM's and the decoder's parameters of each run."""
    config = runs[0].config
    stage1 = train_stage1(runs, mesh, method=method)
    lam_params = [state.lam_params for state in stage1]
    if config.stage1.joint:
        return lam_params, [state.decoder_params for state in stage1]
    return lam_params, train_separate_decoder(runs, mesh, method, *lam_and_decoder(config), lam_params)


def run_clam(runs: list[Run], mesh, method: str = "clam") -> None:
    """CLAM, or with `method="lapo"` and configs of discrete latents and a separate decoder, LAPO."""
    runs = _untrained(runs, method)
    if not runs:
        return
    config = runs[0].config
    lam, decoder = lam_and_decoder(config)
    start = time.perf_counter()
    lam_params, decoders = clam_stage1(runs, mesh, method)
    entries = []
    for run, params, decoder_params in zip(runs, lam_params, decoders):
        errors = {f"decoder_mse_{name}": clam.decoder_error(
            lam, decoder, params, decoder_params, run.padded(name), run.datasets[name].actions,
            batch_size=config.train.relabel_batch_size) for name in ("labeled", "expert")}
        last = last_metrics(run.workdir, f"{method}/stage1")
        entries.append({"steps": config.stage1.steps, "recon_loss": last.get("recon_loss"),
                        "cheat_loss": last.get("cheat_loss"), "steps_per_s": last.get("steps_per_s"), **errors,
                        **{k: last[k] for k in ("vq_perplexity", "vq_usage") if k in last}})
    _record(runs, method, "stage1", start, entries)

    start = time.perf_counter()
    latents = [clam.relabel(lam, params, run.padded("expert"), batch_size=config.train.relabel_batch_size)
               for run, params in zip(runs, lam_params)]
    _record(runs, method, "relabel", start, [{"transitions": int(z[..., 0].size)} for z in latents])

    start = time.perf_counter()
    inputs = [transition_observations(run.datasets["expert"].observations, run.normalizer) for run in runs]
    image_encoder = "space_time" if _policy_encoder_from_idm(config) else None
    model = make_policy(policy_model(config, config.lam.latent_dim, False, image_encoder))
    init_params = None
    if image_encoder:
        example = jax.tree.map(lambda x: x[:1], inputs[0])
        init_params = [with_idm_encoder(model.init(jax.random.key(run.config.seed), example), params)
                       for run, params in zip(runs, lam_params)]
    states = train_regression(runs, mesh, method, "policy", model, inputs,
                              [policy_targets(config, z) for z in latents], hparams=config.policy,
                              seed_offset=1, init_params=init_params)
    for run, state, decoder_params in zip(runs, states, decoders):
        spec = policy_spec(run.config, method, run.normalizer, config.lam.latent_dim, False, decoder_spec(config),
                           image_encoder=image_encoder)
        save_policy(run.workdir / method / "policy", {"policy": state.params, "decoder": decoder_params}, spec)
    _record(runs, method, "stage2", start, [{"steps": config.policy.steps}] * len(runs))


def _policy_encoder_from_idm(config) -> bool:
    """Whether the latent policy starts from the Space-Time IDM's image encoder (paper section 3.2)."""
    return config.observation == "image" and config.policy.init_from_idm


def _quantized(config, baseline) -> None:
    """The LAM of a discrete-latent baseline: `baseline`'s codebook and latent sizes, no decoder in stage 1."""
    config.lam.codebook_size, config.lam.latent_dim = baseline.codebook_size, baseline.latent_dim
    config.stage1.joint = False


def run_lapo(runs: list[Run], mesh) -> None:
    """LAPO: CLAM's pipeline with vector-quantized latents and the decoder fitted after the LAM."""
    run_clam(_with_config(runs, lambda c: _quantized(c, c.lapo)), mesh, method="lapo")


def _train_action_policy(runs: list[Run], mesh, method: str, inputs: list, targets: list, *, seed_offset: int,
                         init_params: list | None = None, encoders: list | None = None, encoder=None) -> None:
    """Trains a tanh-squashed policy on (inputs, true or inferred actions [N, T, A] of each episode) per run and
    saves it, with the encoder the inputs came from if any."""
    config = runs[0].config
    model = make_policy(policy_model(config, task_dims(config.task)[1], squash=True))
    states = train_regression(runs, mesh, method, "policy", model, inputs,
                              [policy_targets(config, y) for y in targets], hparams=config.policy,
                              seed_offset=seed_offset, init_params=init_params)
    for i, (run, state) in enumerate(zip(runs, states)):
        params = {"policy": state.params, **({"encoder": encoders[i]} if encoders else {})}
        spec = policy_spec(run.config, method, run.normalizer, task_dims(config.task)[1], True, encoder=encoder)
        save_policy(run.workdir / method / "policy", params, spec)


def run_bc(runs: list[Run], mesh, method: str = "bc") -> None:
    """BC on the transitions of `_POLICY_DATA[method]` with their true actions."""
    runs = _untrained(runs, method)
    if not runs:
        return
    start = time.perf_counter()
    episodes = [run.datasets[_POLICY_DATA[method]] for run in runs]
    _train_action_policy(runs, mesh, method,
                         [transition_observations(e.observations, run.normalizer) for e, run in zip(episodes, runs)],
                         [episode_actions(e) for e in episodes], seed_offset=2)
    _record(runs, method, "policy", start,
            [{"steps": run.config.policy.steps, "episodes": e.num_episodes} for e, run in zip(episodes, runs)])


def run_vpt(runs: list[Run], mesh) -> None:
    """VPT: an IDM fitted to D_labeled's true actions labels the expert episodes; BC on those labels.

    The IDM is an MLP of the LAM's hidden sizes over the LAM's window, with a
    tanh output, trained with the policy recipe.
    """
    runs = _untrained(runs, "vpt")
    if not runs:
        return
    config = runs[0].config
    start = time.perf_counter()
    idm = MLPPolicy(out_dim=task_dims(config.task)[1], hidden=list(config.lam.hidden), squash=True,
                    dtype=config.train.compute_dtype)
    idm_states = train_regression(
        runs, mesh, "vpt", "idm", idm, [flat_windows(run.config, run.normalizer, run.datasets["labeled"])
                                        for run in runs],
        [transition_actions(run.datasets["labeled"]) for run in runs], hparams=config.policy, seed_offset=4)
    expert = [run.datasets["expert"] for run in runs]
    labels = [np.asarray(jax.jit(idm.apply)(state.params, flat_windows(run.config, run.normalizer, episodes)))
              .reshape(episodes.num_episodes, -1, idm.out_dim)
              for run, state, episodes in zip(runs, idm_states, expert)]
    _record(runs, "vpt", "idm", start, [{"steps": config.policy.steps, "idm_mse_expert": _expert_error(run, y)}
                                        for run, y in zip(runs, labels)])
    _imitate_expert_labels(runs, mesh, "vpt", labels, seed_offset=5)


def _expert_error(run: Run, labels: np.ndarray) -> float:
    """MSE of inferred actions [N, T, A] against the expert episodes' true actions."""
    return float(np.mean(np.square(labels - episode_actions(run.datasets["expert"]))))


def _imitate_expert_labels(runs: list[Run], mesh, method: str, labels: list, *, seed_offset: int) -> None:
    """BC on the expert episodes with inferred actions ([N, T, A] per run): `method`'s "policy" stage."""
    start = time.perf_counter()
    _train_action_policy(runs, mesh, method, [transition_observations(run.datasets["expert"].observations,
                                                                      run.normalizer) for run in runs],
                         labels, seed_offset=seed_offset)
    _record(runs, method, "policy", start, [{"steps": runs[0].config.policy.steps}] * len(runs))


def run_clam_decoded(runs: list[Run], mesh) -> None:
    """CLAM's labels in action space: CLAM's IDM and decoder label the expert episodes with decoded actions,
    and BC imitates those, where CLAM's policy imitates the latents and decodes its own outputs. An
    ablation, not in the paper: it separates the labels' quality from acting through the latent space.
    CLAM's stage 1 (the same program, data and seed) is kept under `clam/` and serves both.
    """
    runs = _untrained(runs, "clam_decoded")
    if not runs:
        return
    config = runs[0].config
    lam, decoder = lam_and_decoder(config)
    start = time.perf_counter()
    lam_params, decoders = clam_stage1(runs, mesh, "clam")
    labels = [clam.decoded_actions(lam, decoder, params, decoder_params, run.padded("expert"),
                                   batch_size=config.train.relabel_batch_size)
              for run, params, decoder_params in zip(runs, lam_params, decoders)]
    _record(runs, "clam_decoded", "labels", start, [
        {"stage1_steps": config.stage1.steps, "label_mse_expert": _expert_error(run, y)}
        for run, y in zip(runs, labels)])
    _imitate_expert_labels(runs, mesh, "clam_decoded", labels, seed_offset=1)


def run_lapa(runs: list[Run], mesh) -> None:
    """LAPA: a LAM with quantized latents, trained without a decoder, labels the expert episodes; a latent
    policy imitates those latents; then its output layer is replaced by an action head and the whole
    policy is fine-tuned on D_labeled's true actions.

    The latent policy regresses the codewords (MSE), as CLAM's stage 2 does,
    where LAPA proper classifies latent tokens. With LAPO's codebook sizes, its
    LAM is LAPO's (the same program, data and seed): one stage 1, kept under
    `lapo/`, serves both.
    """
    runs = _untrained(runs, "lapa")
    if not runs:
        return
    quantized = _with_config(runs, lambda c: _quantized(c, c.lapa))
    config = quantized[0].config
    lam, _ = lam_and_decoder(config)
    start = time.perf_counter()
    shared = config.lapa.to_dict() == config.lapo.to_dict()
    stage1 = train_stage1(quantized, mesh, method="lapo" if shared else "lapa")
    latents = [clam.relabel(lam, state.lam_params, run.padded("expert"), batch_size=config.train.relabel_batch_size)
               for run, state in zip(quantized, stage1)]
    inputs = [transition_observations(run.datasets["expert"].observations, run.normalizer) for run in runs]
    latent_policy = make_policy(policy_model(config, config.lam.latent_dim, squash=False))
    pretrained = train_regression(runs, mesh, "lapa", "latent_policy", latent_policy, inputs,
                                  [policy_targets(config, z.reshape(*z.shape[:2], -1)) for z in latents],
                                  hparams=config.policy, seed_offset=6)
    _record(runs, "lapa", "pretraining", start,
            [{"stage1_steps": config.stage1.steps, "latent_policy_steps": config.policy.steps}] * len(runs))

    start = time.perf_counter()
    inputs = [transition_observations(run.datasets["labeled"].observations, run.normalizer) for run in runs]
    action_policy = make_policy(policy_model(config, task_dims(config.task)[1], squash=True))
    init_params = [with_hidden_layers_of(action_policy.init(jax.random.key(run.config.seed + 7), x[:1]),
                                         on_host(state.params))
                   for run, x, state in zip(runs, inputs, pretrained)]
    _train_action_policy(runs, mesh, "lapa", inputs, [episode_actions(run.datasets["labeled"]) for run in runs],
                         seed_offset=7, init_params=init_params)
    _record(runs, "lapa", "policy", start, [{"steps": config.policy.steps}] * len(runs))


def run_dynamo(runs: list[Run], mesh) -> None:
    """DynaMo: an encoder pretrained by latent dynamics on D_unlabeled, frozen; BC on its embeddings of
    D_labeled. Its IDM and FDM have the LAM's hidden sizes, latent size and window."""
    runs = _untrained(runs, "dynamo")
    if not runs:
        return
    config = runs[0].config
    start = time.perf_counter()
    model = dynamo.DynamicsPretraining(
        obs_dim=task_dims(config.task)[0], embed_dim=config.dynamo.embed_dim, latent_dim=config.lam.latent_dim,
        hidden=tuple(config.lam.hidden), context=config.lam.context, future=config.lam.future,
        dtype=config.train.compute_dtype)
    s1 = config.stage1
    tx = make_optimizer(lr=s1.lr, weight_decay=s1.weight_decay, warmup=s1.warmup, clip=s1.clip)
    step = dynamo.make_dynamo_step(model, tx, batch_size=s1.batch_size,
                                   covariance_weight=config.dynamo.covariance_weight,
                                   batch_sharding=batch_split(mesh))
    state, multi_step, inputs = seeded_program(
        runs, mesh, functools.partial(dynamo.init_dynamo, model=model, tx=tx),
        [{"observations": run.padded("unlabeled")} for run in runs], step, seed_offset=8)
    states = train_stage(runs, state, multi_step, inputs, s1.steps, "dynamo", "pretraining")
    encoders = [dynamo.encoder_params(on_host(state.params)) for state in states]
    _record(runs, "dynamo", "pretraining", start, [
        {"steps": s1.steps, **{k: last_metrics(run.workdir, "dynamo/pretraining").get(k)
                               for k in ("dynamics_loss", "covariance_loss", "embedding_std")}} for run in runs])

    start = time.perf_counter()
    embed = jax.jit(MLP(**dynamo.encoder_spec(model)).apply)
    _train_action_policy(
        runs, mesh, "dynamo",
        [np.asarray(embed(encoder, transition_observations(run.datasets["labeled"].observations, run.normalizer)))
         for run, encoder in zip(runs, encoders)],
        [episode_actions(run.datasets["labeled"]) for run in runs], seed_offset=9, encoders=encoders,
        encoder=dynamo.encoder_spec(model))
    _record(runs, "dynamo", "policy", start, [{"steps": config.policy.steps}] * len(runs))


RECIPES = {"clam": run_clam, "bc": run_bc, "bc_expert": functools.partial(run_bc, method="bc_expert"),
           "vpt": run_vpt, "lapo": run_lapo, "lapa": run_lapa, "dynamo": run_dynamo, "clam_decoded": run_clam_decoded}
