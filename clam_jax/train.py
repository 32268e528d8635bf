"""Runs the whole CLAM pipeline and its reference points on one task.

  python -m clam_jax.train --config=configs/metaworld.py:quick --workdir=runs/quick

Stages: collect (if the datasets are missing) -> CLAM stage 1 (LAM + joint
action decoder; with `stage1.joint=False` the decoder is fitted afterwards) ->
relabel D_unlabeled_expert with the frozen IDM -> stage 2 latent policy ->
evaluation; plus BC on D_labeled (`bc`), privileged BC on D_unlabeled_expert's
true actions (`bc_expert`), VPT (an IDM fitted to D_labeled labels the
expert episodes for BC) and LAPA (quantized-latent pretraining, then fine-tuning
on D_labeled). Every stage is skipped when
its output is in the workdir and resumes from its last checkpoint when it was
interrupted. Results go to `<workdir>/results.json`.
"""
import copy
import functools
import json
import os
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np
from jax.experimental.multihost_utils import sync_global_devices

from clam_jax.cli import FLAGS, run_cli
from clam_jax.collect import DATASETS, collect_datasets, data_dir
from clam_jax.data.episodes import Episodes, read_episodes, read_statistics
from clam_jax.data.statistics import Normalizer
from clam_jax.data.streaming import DevicePrefetcher, make_stage1_loader
from clam_jax.data.windows import all_windows, pad_episodes, window_length
from clam_jax.errors import DataError
from clam_jax.methods import clam
from clam_jax.methods.policy import init_policy, make_policy_step, with_hidden_layers_of
from clam_jax.models.lam import ActionDecoder, MLPPolicy, make_latent_action_model
from clam_jax.rollout.evaluation import evaluate
from clam_jax.rollout.saved_policy import load_policy, policy_exists, save_policy
from clam_jax.rollout.videos import save_videos
from clam_jax.training.checkpoints import TrainStateCheckpoints
from clam_jax.training.loop import device_inputs, make_multi_step, make_multi_update, train
from clam_jax.training.metrics import MetricWriter
from clam_jax.training.optim import make_optimizer
from clam_jax.training.sharding import (batch_split, check_batch_divisible, chunk_sharding, init_replicated, make_mesh,
                                        put_replicated)
from clam_jax.validation import validate_config

# The dataset each method imitates: (observations and action labels) for the policy stage.
_POLICY_DATA = {"bc": "labeled", "bc_expert": "expert"}


class StageLog:
    """`<workdir>/<method>/summary.json`: one entry per finished stage, so reruns skip it."""

    def __init__(self, directory: Path):
        self.path = directory / "summary.json"
        self.entries = json.loads(self.path.read_text()) if self.path.exists() else {}

    def done(self, stage: str) -> bool:
        return stage in self.entries

    def record(self, stage: str, entry: dict) -> None:
        self.entries[stage] = entry
        if jax.process_index() == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.entries, indent=2))


def load_datasets(config, workdir) -> tuple[dict[str, Episodes], dict]:
    """Reads the three datasets and their statistics, checking their sizes against the config."""
    root = data_dir(workdir)
    datasets = {name: read_episodes(root / name) for name in DATASETS}
    stats = {name: read_statistics(root / name) for name in DATASETS}
    for name, episodes in datasets.items():
        obs_dim, act_dim = episodes.observations.shape[-1], episodes.actions.shape[-1]
        if (obs_dim, act_dim) != (config.obs_dim, config.action_dim):
            raise DataError(
                f"Dataset {name} has observations of size {obs_dim} and actions of size {act_dim}, but the "
                f"config expects {config.obs_dim} and {config.action_dim}; use a workdir made with this config.")
    return datasets, stats


def _lam_and_decoder(config):
    lam = make_latent_action_model(
        config.lam.kind, obs_dim=config.obs_dim, latent_dim=config.lam.latent_dim, context=config.lam.context,
        future=config.lam.future, dtype=config.train.compute_dtype, hidden=config.lam.hidden,
        transformer=config.lam.transformer, codebook_size=config.lam.codebook_size)
    decoder = ActionDecoder(**_decoder_spec(config))
    return lam, decoder


def _decoder_spec(config) -> dict:
    return {"action_dim": config.action_dim, "embed_dim": config.decoder.embed_dim,
            "hidden": list(config.decoder.hidden), "dtype": config.train.compute_dtype}


def train_stage1(config, workdir: Path, mesh, datasets, normalizer, method: str = "clam") -> clam.Stage1State:
    lam, decoder = _lam_and_decoder(config)
    s1 = config.stage1
    lam_tx = make_optimizer(lr=s1.lr, weight_decay=s1.weight_decay, warmup=s1.warmup, clip=s1.clip)
    decoder_tx = make_optimizer(lr=s1.decoder_lr, weight_decay=s1.decoder_weight_decay, warmup=s1.warmup,
                                clip=s1.clip)
    init = functools.partial(clam.init_stage1, lam=lam, decoder=decoder, lam_tx=lam_tx, decoder_tx=decoder_tx)
    state = init_replicated(init, mesh, jax.random.key(config.seed))
    if config.train.input == "stream":
        update = clam.make_stage1_update(lam, decoder, lam_tx, decoder_tx, decoder_every=s1.decoder_every,
                                         beta=s1.beta, joint=s1.joint, batch_sharding=batch_split(mesh))
        multi_step, inputs = make_multi_update(update), _streamed_inputs(config, workdir, mesh, normalizer)
    else:
        step = clam.make_stage1_step(lam, decoder, lam_tx, decoder_tx, batch_size=s1.batch_size,
                                     labeled_batch_size=s1.labeled_batch_size, decoder_every=s1.decoder_every,
                                     beta=s1.beta, joint=s1.joint, batch_sharding=batch_split(mesh))
        data = put_replicated({"unlabeled": _padded(config, normalizer, datasets["unlabeled"]),
                               "labeled": _padded(config, normalizer, datasets["labeled"]),
                               "labeled_actions": datasets["labeled"].actions}, mesh)
        multi_step = make_multi_step(step, config.train.steps_per_dispatch)
        inputs = device_inputs(data)
    return _train_stage(config, workdir, state, multi_step, inputs, s1.steps, method, "stage1")


def _streamed_inputs(config, workdir: Path, mesh, normalizer):
    """Stage-1 chunks read from the datasets on disk by grain workers, prefetched onto the devices."""
    root, k = data_dir(workdir), config.train.steps_per_dispatch

    def inputs(start_step: int) -> DevicePrefetcher:
        loader = make_stage1_loader(
            root / "unlabeled", root / "labeled", normalizer, context=config.lam.context,
            future=config.lam.future, batch_size=config.stage1.batch_size,
            labeled_batch_size=config.stage1.labeled_batch_size, steps_per_dispatch=k, seed=config.seed,
            num_workers=config.train.stream_workers, windows_per_episode=config.train.windows_per_episode,
            first_chunk=start_step // k)
        return DevicePrefetcher(loader, chunk_sharding(mesh), size=config.train.prefetch)

    return inputs


def _train_stage(config, workdir: Path, state, multi_step, inputs, num_steps: int, method: str, stage: str):
    """Trains with checkpoints in `<workdir>/<method>/checkpoints/<stage>` and metrics tagged `<method>/<stage>`."""
    checkpoints = TrainStateCheckpoints(workdir / method / "checkpoints" / stage)
    writer = MetricWriter(workdir, f"{method}/{stage}")
    try:
        return train(state, multi_step, inputs, num_steps=num_steps,
                     steps_per_dispatch=config.train.steps_per_dispatch, log_every=config.train.log_every,
                     checkpoint_every=config.train.checkpoint_every, checkpoints=checkpoints, writer=writer,
                     desc=f"{method} {stage}")
    finally:
        writer.close()
        checkpoints.close()


def _padded(config, normalizer, episodes: Episodes) -> np.ndarray:
    """Normalized observations padded for the LAM's windows (see `clam_jax.data.windows`)."""
    return pad_episodes(normalizer(episodes.observations), config.lam.context, config.lam.future)


def train_regression(config, workdir: Path, mesh, method: str, stage: str, model, inputs, targets, *,
                     hparams, seed_offset: int, init_params=None):
    """Fits `model(inputs) ~ targets` by MSE with the recipe in `hparams` (lr, weight_decay, warmup, clip,
    batch_size, steps), from `init_params` (host arrays) if given: the policies, and the action decoder
    when it is trained after the LAM."""
    tx = make_optimizer(lr=hparams.lr, weight_decay=hparams.weight_decay, warmup=hparams.warmup,
                        clip=hparams.clip)
    init = functools.partial(init_policy, model=model, tx=tx, obs_dim=inputs.shape[-1], params=init_params)
    state = init_replicated(init, mesh, jax.random.key(config.seed + seed_offset))
    data = put_replicated({"inputs": inputs, "targets": targets}, mesh)
    step = make_policy_step(model, tx, batch_size=hparams.batch_size, batch_sharding=batch_split(mesh))
    return _train_stage(config, workdir, state, make_multi_step(step, config.train.steps_per_dispatch),
                        device_inputs(data), hparams.steps, method, stage)


def train_separate_decoder(config, workdir: Path, mesh, lam, decoder, lam_params, labeled: Episodes, normalizer):
    """The decoder trained after the LAM, on the frozen IDM's latents of D_labeled (`stage1.joint=False`)."""
    s1 = config.stage1
    latents = clam.relabel(lam, lam_params, _padded(config, normalizer, labeled),
                           batch_size=config.train.relabel_batch_size)
    actions = labeled.actions[:, : latents.shape[1]]
    hparams = ml_collections.ConfigDict(dict(
        lr=s1.decoder_lr, weight_decay=s1.decoder_weight_decay, warmup=s1.warmup, clip=s1.clip,
        batch_size=s1.labeled_batch_size, steps=s1.separate_decoder_steps))
    state = train_regression(config, workdir, mesh, "clam", "decoder", decoder,
                             latents.reshape(-1, latents.shape[-1]), actions.reshape(-1, actions.shape[-1]),
                             hparams=hparams, seed_offset=3)
    return state.params


def _policy_spec(config, method, normalizer, out_dim, squash, decoder=None) -> dict:
    return {"method": method, "task": config.task, "obs_dim": config.obs_dim, "action_dim": config.action_dim,
            "max_steps": config.max_steps, "action_repeat": config.action_repeat,
            "normalizer": normalizer.to_dict(),
            "policy": {"out_dim": out_dim, "hidden": list(config.policy.hidden), "squash": squash,
                       "dtype": config.train.compute_dtype},
            "decoder": decoder, "config": config.to_dict()}


def _transitions(observations: np.ndarray, normalizer) -> np.ndarray:
    """Normalized o_t for t in 0..T-1, flattened over episodes."""
    return normalizer(observations[:, :-1]).reshape(-1, observations.shape[-1])


def run_clam(config, workdir: Path, mesh, datasets, normalizer, log: StageLog) -> None:
    if policy_exists(workdir / "clam" / "policy"):
        return
    lam, decoder = _lam_and_decoder(config)
    start = time.perf_counter()
    stage1 = train_stage1(config, workdir, mesh, datasets, normalizer)
    decoder_params = stage1.decoder_params if config.stage1.joint else train_separate_decoder(
        config, workdir, mesh, lam, decoder, stage1.lam_params, datasets["labeled"], normalizer)
    if not log.done("stage1"):
        errors = {f"decoder_mse_{name}": clam.decoder_error(
            lam, decoder, stage1.lam_params, decoder_params, _padded(config, normalizer, datasets[name]),
            datasets[name].actions, batch_size=config.train.relabel_batch_size) for name in ("labeled", "expert")}
        last = _last_metrics(workdir, "clam/stage1")
        log.record("stage1", {"wall_time_s": time.perf_counter() - start, "steps": config.stage1.steps,
                              "recon_loss": last.get("recon_loss"), "cheat_loss": last.get("cheat_loss"),
                              "steps_per_s": last.get("steps_per_s"), **errors})

    start = time.perf_counter()
    expert = datasets["expert"]
    latents = clam.relabel(lam, stage1.lam_params, _padded(config, normalizer, expert),
                           batch_size=config.train.relabel_batch_size)
    log.record("relabel", {"wall_time_s": time.perf_counter() - start, "transitions": int(latents[..., 0].size)})

    start = time.perf_counter()
    spec = _policy_spec(config, "clam", normalizer, config.lam.latent_dim, False, _decoder_spec(config))
    inputs = _transitions(expert.observations, normalizer)
    state = train_regression(config, workdir, mesh, "clam", "policy", MLPPolicy(**spec["policy"]), inputs,
                             latents.reshape(len(inputs), -1), hparams=config.policy, seed_offset=1)
    save_policy(workdir / "clam" / "policy", {"policy": state.params, "decoder": decoder_params}, spec)
    log.record("stage2", {"wall_time_s": time.perf_counter() - start, "steps": config.policy.steps})


def run_bc(config, workdir: Path, mesh, method: str, datasets, normalizer, log: StageLog) -> None:
    if policy_exists(workdir / method / "policy"):
        return
    start = time.perf_counter()
    episodes = datasets[_POLICY_DATA[method]]
    inputs = _transitions(episodes.observations, normalizer)
    targets = _transition_actions(episodes)
    spec = _policy_spec(config, method, normalizer, config.action_dim, True)
    state = train_regression(config, workdir, mesh, method, "policy", MLPPolicy(**spec["policy"]), inputs, targets,
                             hparams=config.policy, seed_offset=2)
    save_policy(workdir / method / "policy", {"policy": state.params}, spec)
    log.record("policy", {"wall_time_s": time.perf_counter() - start, "steps": config.policy.steps,
                          "episodes": episodes.num_episodes})


def run_vpt(config, workdir: Path, mesh, datasets, normalizer, log: StageLog) -> None:
    """VPT: an IDM fitted to D_labeled's true actions labels the expert episodes; BC on those labels.

    The IDM is an MLP of the LAM's hidden sizes over the LAM's window, with a
    tanh output, trained with the policy recipe.
    """
    if policy_exists(workdir / "vpt" / "policy"):
        return
    start = time.perf_counter()
    labeled, expert = datasets["labeled"], datasets["expert"]
    idm = MLPPolicy(out_dim=config.action_dim, hidden=list(config.lam.hidden), squash=True,
                    dtype=config.train.compute_dtype)
    idm_state = train_regression(config, workdir, mesh, "vpt", "idm", idm, _flat_windows(config, normalizer, labeled),
                                 _transition_actions(labeled), hparams=config.policy, seed_offset=4)
    labels = np.asarray(jax.jit(idm.apply)(idm_state.params, _flat_windows(config, normalizer, expert)))
    log.record("idm", {"wall_time_s": time.perf_counter() - start, "steps": config.policy.steps,
                       "idm_mse_expert": float(np.mean(np.square(labels - _transition_actions(expert))))})

    start = time.perf_counter()
    spec = _policy_spec(config, "vpt", normalizer, config.action_dim, True)
    state = train_regression(config, workdir, mesh, "vpt", "policy", MLPPolicy(**spec["policy"]),
                             _transitions(expert.observations, normalizer), labels, hparams=config.policy,
                             seed_offset=5)
    save_policy(workdir / "vpt" / "policy", {"policy": state.params}, spec)
    log.record("policy", {"wall_time_s": time.perf_counter() - start, "steps": config.policy.steps})


def run_lapa(config, workdir: Path, mesh, datasets, normalizer, log: StageLog) -> None:
    """LAPA: a LAM with quantized latents, trained without a decoder, labels the expert episodes; a latent
    policy imitates those latents; then its output layer is replaced by an action head and the whole
    policy is fine-tuned on D_labeled's true actions.

    The latent policy regresses the codewords (MSE), as CLAM's stage 2 does,
    where LAPA proper classifies latent tokens.
    """
    if policy_exists(workdir / "lapa" / "policy"):
        return
    lapa = copy.deepcopy(config)
    lapa.lam.codebook_size, lapa.stage1.joint = config.lapa.codebook_size, False
    lam, _ = _lam_and_decoder(lapa)
    start = time.perf_counter()
    stage1 = train_stage1(lapa, workdir, mesh, datasets, normalizer, method="lapa")
    expert = datasets["expert"]
    latents = clam.relabel(lam, stage1.lam_params, _padded(lapa, normalizer, expert),
                           batch_size=config.train.relabel_batch_size)
    inputs = _transitions(expert.observations, normalizer)
    latent_policy = train_regression(
        config, workdir, mesh, "lapa", "latent_policy", MLPPolicy(**_policy_spec(
            config, "lapa", normalizer, config.lam.latent_dim, False)["policy"]),
        inputs, latents.reshape(len(inputs), -1), hparams=config.policy, seed_offset=6)
    log.record("pretraining", {"wall_time_s": time.perf_counter() - start, "stage1_steps": config.stage1.steps,
                               "latent_policy_steps": config.policy.steps})

    start = time.perf_counter()
    spec = _policy_spec(config, "lapa", normalizer, config.action_dim, True)
    model, labeled = MLPPolicy(**spec["policy"]), datasets["labeled"]
    inputs = _transitions(labeled.observations, normalizer)
    head = model.init(jax.random.key(config.seed + 7), inputs[:1])
    pretrained = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), latent_policy.params)
    state = train_regression(config, workdir, mesh, "lapa", "policy", model, inputs, _transition_actions(labeled),
                             hparams=config.policy, seed_offset=7,
                             init_params=with_hidden_layers_of(head, pretrained))
    save_policy(workdir / "lapa" / "policy", {"policy": state.params}, spec)
    log.record("policy", {"wall_time_s": time.perf_counter() - start, "steps": config.policy.steps})


def _flat_windows(config, normalizer, episodes: Episodes) -> np.ndarray:
    """Every transition's LAM window, flattened: [N * T, window * obs_dim]."""
    padded = _padded(config, normalizer, episodes)
    windows = all_windows(padded, window_length(config.lam.context, config.lam.future))
    return np.asarray(windows).reshape(windows.shape[0], -1)


def _transition_actions(episodes: Episodes) -> np.ndarray:
    """a_t for t in 0..T-1, flattened over episodes (aligned with `_transitions` and `_flat_windows`)."""
    return episodes.actions[:, :-1].reshape(-1, episodes.actions.shape[-1])


def _last_metrics(workdir: Path, stage: str) -> dict:
    path = workdir / "metrics.jsonl"
    last = {}
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["stage"] == stage:
                last = record
    return last


def run_evaluation(config, workdir: Path, method: str, log: StageLog) -> dict | None:
    """Evaluates `method`'s saved policy; returns the evaluation on process 0, None elsewhere.

    Every process restores the policy (orbax restores collectively), only process 0
    runs the simulator, and all processes meet afterwards before the next stage.
    """
    if not log.done("eval"):
        start = time.perf_counter()
        act, _ = load_policy(workdir / method / "policy")
        if jax.process_index() == 0:
            result = evaluate(act, config.task, num_episodes=config.eval.episodes, split=config.eval.split,
                              max_steps=config.max_steps, action_repeat=config.action_repeat,
                              num_workers=config.eval.num_workers, videos=config.eval.videos)
            frames = result.pop("frames", None)
            if frames is not None:
                save_videos(workdir / method / "videos", frames)
            log.record("eval", {"wall_time_s": time.perf_counter() - start, **result})
    sync_global_devices(f"clam_jax: {method} evaluated")
    return log.entries.get("eval") if jax.process_index() == 0 else None


def run(config, workdir) -> list[dict]:
    """Runs every stage that is not yet done and returns the rows of results.json."""
    validate_config(config)
    mesh = make_mesh()
    for name in ("stage1.batch_size", "stage1.labeled_batch_size", "policy.batch_size"):
        section, key = name.split(".")
        check_batch_divisible(config[section][key], mesh, f"config.{name}")
    workdir = Path(workdir)
    if jax.process_index() == 0:  # one process collects; the others read what it wrote (shared workdir)
        collect_datasets(config, workdir)
    sync_global_devices("clam_jax: datasets ready")
    datasets, stats = load_datasets(config, workdir)
    normalizer = Normalizer.from_statistics(stats["unlabeled"])
    rows = []
    for method in config.methods:
        log = StageLog(workdir / method)
        if method == "clam":
            run_clam(config, workdir, mesh, datasets, normalizer, log)
        elif method == "vpt":
            run_vpt(config, workdir, mesh, datasets, normalizer, log)
        elif method == "lapa":
            run_lapa(config, workdir, mesh, datasets, normalizer, log)
        else:
            run_bc(config, workdir, mesh, method, datasets, normalizer, log)
        result = run_evaluation(config, workdir, method, log)
        if result is None:
            continue
        rows.append({"task": config.task, "method": method, "success_rate": result["success_rate"],
                     "num_episodes": result["num_episodes"], "seed": config.seed, "split": result["split"],
                     "return_mean": float(np.mean(result["returns"])),
                     "wall_time_s": {k: v["wall_time_s"] for k, v in log.entries.items()},
                     **({"stage1": log.entries["stage1"]} if method == "clam" else {})})
    if jax.process_index() == 0:
        payload = {"config": config.to_dict(), "datasets": {
            name: {k: s.get(k) for k in ("num_episodes", "episodes_attempted", "success_rate", "return_mean",
                                         "collect_wall_time_s")}
            for name, s in stats.items()},
            "results": rows}
        (workdir / "results.json").write_text(json.dumps(payload, indent=2))
        for row in rows:
            print(f"{row['method']:>10}: success {row['success_rate']:.2f} over {row['num_episodes']} episodes")
    return rows


def main(argv):
    del argv
    if FLAGS.config is not None:
        if FLAGS.config.eval.videos:
            os.environ.setdefault("MUJOCO_GL", "egl")
        if FLAGS.config.train.compilation_cache_dir:
            jax.config.update("jax_compilation_cache_dir", FLAGS.config.train.compilation_cache_dir)
    run_cli(lambda: run(FLAGS.config, FLAGS.workdir))


if __name__ == "__main__":
    from absl import app

    app.run(main)
