"""The pipeline's building blocks, shared by every method's recipe (`clam_jax.recipes`).

Datasets and their checks, the per-method stage log that lets reruns skip
finished stages, training one stage with checkpoints and metrics (CLAM's stage 1,
or any regression), saved-policy specs, and the host-side views of episodes the
models train on (normalized transitions, padded episodes, LAM windows).

Training takes a list of `Run`s: runs that differ only in their seed train
together in one program, with a leading seed axis on the state and the data
(`clam_jax.training.seeds`); a single run trains without one.
"""
import dataclasses
import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from clam_jax.collect import DATASETS, data_dir
from clam_jax.data.episodes import Episodes, concatenate_episodes, read_episodes, read_statistics
from clam_jax.data.observations import model_observations
from clam_jax.data.statistics import Normalizer, PartsNormalizer, PixelNormalizer, dataset_statistics
from clam_jax.data.streaming import DevicePrefetcher, make_stage1_loader
from clam_jax.data.windows import all_windows, idm_inputs, pad_episodes, window_length
from clam_jax.envs.tasks import proprio_dims, task_dims
from clam_jax.errors import ConfigError, DataError
from clam_jax.methods import clam
from clam_jax.methods.policy import init_policy, make_policy_step
from clam_jax.models.lam import ActionDecoder, make_latent_action_model
from clam_jax.rollout.chunking import chunk_targets
from clam_jax.training.checkpoints import TrainStateCheckpoints
from clam_jax.training.loop import device_inputs, loop_compiler_options, make_multi_step, make_multi_update, train
from clam_jax.training.metrics import MetricWriter
from clam_jax.training.optim import make_optimizer
from clam_jax.training.seeds import SeedCheckpoints, SeedMetricWriters, seed_slice, stack
from clam_jax.training.sharding import batch_split, chunk_sharding, init_replicated, put_replicated


@dataclasses.dataclass
class Run:
    """One seed's run of the pipeline: its config, workdir, datasets and observation normalizer."""

    config: ml_collections.ConfigDict
    workdir: Path
    datasets: dict[str, Episodes]
    normalizer: Normalizer
    logs: dict = dataclasses.field(default_factory=dict)

    def log(self, method: str) -> "StageLog":
        """`method`'s stage log, read once: in a multi-process run only process 0 writes it, and the other
        processes keep their copy in memory (read it before any recipe runs)."""
        if method not in self.logs:
            self.logs[method] = StageLog(self.workdir / method)
        return self.logs[method]

    def padded(self, name: str) -> np.ndarray:
        """Dataset `name`'s normalized observations padded for the LAM's windows."""
        return padded_observations(self.config, self.normalizer, self.datasets[name])


class StageLog:
    """`<workdir>/<method>/summary.json`: one entry per finished stage, so reruns skip it."""

    def __init__(self, directory: Path):
        self.path = directory / "summary.json"
        self.entries = json.loads(self.path.read_text()) if self.path.exists() else {}

    def done(self, stage: str) -> bool:
        return stage in self.entries

    def record(self, stage: str, entry: dict) -> None:
        """Keeps the entry and, on process 0, rewrites the file atomically (no reader sees half of it)."""
        self.entries[stage] = entry
        if jax.process_index() == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(".json.partial")
            partial.write_text(json.dumps(self.entries, indent=2))
            partial.replace(self.path)


def load_datasets(config, workdir) -> tuple[dict[str, Episodes], dict]:
    """Reads the three datasets and their statistics, checking their sizes against the config. With
    `config.observation == "image"` the episodes' observations are their frames (the states stay unused), or
    with `config.proprio` their frames and proprioception (`clam_jax.data.observations`). Two views of the
    data the paper's locomotion protocol takes: `config.labeled_from_unlabeled` > 0 replaces D_labeled with
    that many episodes of D_unlabeled, with their actions, drawn with the run's seed (the paper subsamples
    medium-replay); `config.unlabeled_includes_expert` follows D_unlabeled with the expert episodes (the
    paper's D_unlabeled-expert is a subset of D_unlabeled). Statistics are those of the datasets so formed."""
    root = data_dir(workdir)
    datasets = {name: read_episodes(root / name) for name in DATASETS}
    stats = {name: read_statistics(root / name) for name in DATASETS}
    drawn = config.get("labeled_from_unlabeled", 0)
    if drawn:
        available = datasets["unlabeled"].num_episodes
        if drawn > available:
            raise DataError(f"config.labeled_from_unlabeled={drawn} but D_unlabeled has {available} episodes.")
        picks = np.sort(np.random.default_rng(config.seed).choice(available, drawn, replace=False))
        datasets["labeled"] = datasets["unlabeled"].take(picks)
        stats["labeled"] = {**stats["labeled"], **dataset_statistics(datasets["labeled"])}
    if config.get("unlabeled_includes_expert", False):
        datasets["unlabeled"] = concatenate_episodes(datasets["unlabeled"], datasets["expert"])
        stats["unlabeled"] = {**stats["unlabeled"], **dataset_statistics(datasets["unlabeled"])}
    for name, episodes in datasets.items():
        obs_dim, act_dim = episodes.observations.shape[-1], episodes.actions.shape[-1]
        if (obs_dim, act_dim) != task_dims(config.task):
            raise DataError(
                f"Dataset {name} has observations of size {obs_dim} and actions of size {act_dim}, but "
                f"{config.task} has {task_dims(config.task)}; use a workdir made with this config.")
        if config.observation == "image":
            size = config.image_size
            if episodes.images is None or episodes.images.shape[2:4] != (size, size):
                found = "no frames" if episodes.images is None else f"frames of {episodes.images.shape[2:4]}"
                raise DataError(f"Dataset {name} has {found} but the config trains on {size}x{size} frames; "
                                "use a workdir collected with this config's image_size.")
            observations = model_observations(episodes.observations, episodes.images, proprio_size(config))
            datasets[name] = dataclasses.replace(episodes, observations=observations)
    return datasets, stats


def proprio_size(config) -> int:
    """The size of the proprioceptive input beside frames; 0 without one."""
    return proprio_dims(config.task) if config.observation == "image" and config.proprio else 0


def make_normalizer(config, stats: dict) -> Normalizer | PixelNormalizer | PartsNormalizer:
    """States are z-scored with D_unlabeled's moments; frames stay pixels (see `PixelNormalizer`), and
    proprioception beside them is z-scored as the states it comes from."""
    if config.observation != "image":
        return Normalizer.from_statistics(stats["unlabeled"])
    if not proprio_size(config):
        return PixelNormalizer()
    return PartsNormalizer({"image": PixelNormalizer(),
                            "proprio": Normalizer.from_statistics(stats["unlabeled"], dims=proprio_size(config))})


def lam_and_decoder(config):
    """The LAM and the action decoder the config describes (also the config saved with a policy, which has no
    `lam.difference_scale` in runs older than that option)."""
    lam = make_latent_action_model(
        config.lam.kind, obs_dim=task_dims(config.task)[0], latent_dim=config.lam.latent_dim,
        context=config.lam.context, future=config.lam.future, dtype=config.train.compute_dtype,
        hidden=config.lam.hidden, transformer=config.lam.transformer, space_time=config.lam.space_time,
        image_size=config.image_size, proprio_dim=proprio_size(config), codebook_size=config.lam.codebook_size,
        codebooks=config.lam.codebooks, tokens=config.lam.tokens,
        difference_scale=config.lam.get("difference_scale", 0.0))
    decoder = ActionDecoder(**decoder_spec(config))
    return lam, decoder


def decoder_spec(config) -> dict:
    return {"action_dim": task_dims(config.task)[1], "embed_dim": config.decoder.embed_dim,
            "hidden": list(config.decoder.hidden), "dtype": config.train.compute_dtype}


def stage1_optimizers(config) -> tuple:
    """The LAM's and the decoder's optimizers in stage 1."""
    s1 = config.stage1
    lam_tx = make_optimizer(lr=s1.lr, weight_decay=s1.weight_decay, warmup=s1.warmup, clip=s1.clip)
    decoder_tx = make_optimizer(lr=s1.decoder_lr, weight_decay=s1.decoder_weight_decay, warmup=s1.warmup,
                                clip=s1.clip)
    return lam_tx, decoder_tx


def train_stage1(runs: list[Run], mesh, method: str = "clam") -> list[clam.Stage1State]:
    """CLAM's stage 1 for `runs` (their configs are the first one's but for the seed); a state per run."""
    config = runs[0].config
    lam, decoder = lam_and_decoder(config)
    s1 = config.stage1
    lam_tx, decoder_tx = stage1_optimizers(config)
    init = functools.partial(clam.init_stage1, lam=lam, decoder=decoder, lam_tx=lam_tx, decoder_tx=decoder_tx)
    period = s1.decoder_every if s1.joint else 1  # the decoder step's period, unrolled in the scanned loop
    if config.train.input == "stream":
        if len(runs) > 1:
            raise ConfigError("Streamed input (config.train.input='stream') trains one seed per program; "
                              "train these seeds one by one.")
        update = clam.make_stage1_update(lam, decoder, lam_tx, decoder_tx, decoder_every=s1.decoder_every,
                                         beta=s1.beta, joint=s1.joint, batch_sharding=batch_split(mesh))
        state = init_replicated(init, mesh, jax.random.key(config.seed))
        multi_step = make_multi_update(update, period, compiler_options=loop_compiler_options(mesh))
        inputs = _streamed_inputs(runs[0], mesh)
    else:
        step = clam.make_stage1_step(lam, decoder, lam_tx, decoder_tx, batch_size=s1.batch_size,
                                     labeled_batch_size=s1.labeled_batch_size, decoder_every=s1.decoder_every,
                                     beta=s1.beta, joint=s1.joint, batch_sharding=batch_split(mesh))
        data = [{"unlabeled": run.padded("unlabeled"), "labeled": run.padded("labeled"),
                 "labeled_actions": run.datasets["labeled"].actions} for run in runs]
        state, multi_step, inputs = seeded_program(runs, mesh, init, data, step, seed_offset=0, period=period)
    return train_stage(runs, state, multi_step, inputs, s1.steps, method, "stage1")


def seeded_program(runs: list[Run], mesh, init, data: list[dict], step, *, seed_offset: int, init_args=None,
                   period: int = 1):
    """(initial state, K-step program, inputs) of `step` for `runs`, each with its `data` (host arrays);
    `period` as in `clam_jax.training.loop.scan_steps`.

    The state is `init(key, *init_args[i])` with key = PRNGKey(seed + seed_offset); one
    run trains without a seed axis, several with one (`clam_jax.training.seeds`).
    """
    keys = [jax.random.key(run.config.seed + seed_offset) for run in runs]
    init_args = init_args or [()] * len(runs)
    k, options = runs[0].config.train.steps_per_dispatch, loop_compiler_options(mesh)
    if len(runs) == 1:
        state = init_replicated(init, mesh, keys[0], *init_args[0])
        return (state, make_multi_step(step, k, period=period, compiler_options=options),
                device_inputs(put_replicated(data[0], mesh)))
    state = init_replicated(jax.vmap(init), mesh, jnp.stack(keys), *stack(init_args))
    return (state, make_multi_step(step, k, seeds=len(runs), data_per_seed=True, period=period,
                                   compiler_options=options),
            device_inputs(put_replicated(stack(data), mesh)))


def _streamed_inputs(run: Run, mesh):
    """Stage-1 chunks read from the datasets on disk by grain workers, prefetched onto the devices."""
    config, normalizer = run.config, run.normalizer
    root, k = data_dir(run.workdir), config.train.steps_per_dispatch

    def inputs(start_step: int) -> DevicePrefetcher:
        loader = make_stage1_loader(
            root / "unlabeled", root / "labeled", normalizer, context=config.lam.context,
            future=config.lam.future, observation_key="image" if config.observation == "image" else "observation",
            proprio_dims=proprio_size(config), batch_size=config.stage1.batch_size,
            labeled_batch_size=config.stage1.labeled_batch_size, steps_per_dispatch=k, seed=config.seed,
            num_workers=config.train.stream_workers, windows_per_episode=config.train.windows_per_episode,
            first_chunk=start_step // k)
        return DevicePrefetcher(loader, chunk_sharding(mesh), size=config.train.prefetch)

    return inputs


def train_stage(runs: list[Run], state, multi_step, inputs, num_steps: int, method: str, stage: str) -> list:
    """Trains with checkpoints in `<workdir>/<method>/checkpoints/<stage>` and metrics tagged `<method>/<stage>`
    in every run's workdir; returns the final state of each run."""
    config = runs[0].config
    checkpoints = [TrainStateCheckpoints(run.workdir / method / "checkpoints" / stage) for run in runs]
    writers = [MetricWriter(run.workdir, f"{method}/{stage}") for run in runs]
    grouped = len(runs) > 1
    try:
        state = train(state, multi_step, inputs, num_steps=num_steps,
                      steps_per_dispatch=config.train.steps_per_dispatch, log_every=config.train.log_every,
                      checkpoint_every=config.train.checkpoint_every,
                      checkpoints=SeedCheckpoints(checkpoints) if grouped else checkpoints[0],
                      writer=SeedMetricWriters(writers) if grouped else writers[0],
                      desc=f"{method} {stage}" + (f" ({len(runs)} seeds)" if grouped else ""))
    finally:
        for closable in writers + checkpoints:
            closable.close()
    return [seed_slice(state, i) for i in range(len(runs))] if grouped else [state]


def train_regression(runs: list[Run], mesh, method: str, stage: str, model, inputs: list, targets: list, *,
                     hparams, seed_offset: int, init_params: list | None = None) -> list:
    """Fits `model(inputs[i]) ~ targets[i]` for every run by MSE with the recipe in `hparams` (lr,
    weight_decay, warmup, clip, batch_size, steps), from `init_params[i]` (host arrays) if given: the
    policies, and the action decoder when it is trained after the LAM. A target is an array [M, out], or the
    chunks of a policy that predicts several steps (`policy_targets`). A state per run."""
    tx = make_optimizer(lr=hparams.lr, weight_decay=hparams.weight_decay, warmup=hparams.warmup,
                        clip=hparams.clip)

    def init(key, params=None):
        return init_policy(key, model, tx, jax.tree.map(lambda x: x[:1], inputs[0]), params=params)

    step = make_policy_step(model, tx, batch_size=hparams.batch_size, batch_sharding=batch_split(mesh))
    data = [{"inputs": x, **(y if isinstance(y, dict) else {"targets": y})} for x, y in zip(inputs, targets)]
    state, multi_step, data_inputs = seeded_program(
        runs, mesh, init, data, step, seed_offset=seed_offset,
        init_args=None if init_params is None else [(params,) for params in init_params])
    return train_stage(runs, state, multi_step, data_inputs, hparams.steps, method, stage)


def policy_model(config, out_dim: int, squash: bool, image_encoder: str | None = None) -> dict:
    """The spec of every policy (latent or action) of the config, for `clam_jax.models.policies.make_policy`:
    an `MLPPolicy` on states, an `ImagePolicy` on frames whose encoder is `config.policy.image_encoder` unless
    `image_encoder` says otherwise ("space_time": the architecture of the Space-Time LAM's IDM encoder). It
    outputs `config.policy.chunk` steps of `out_dim` each."""
    spec = {"kind": "mlp", "out_dim": out_dim * config.policy.chunk, "hidden": list(config.policy.hidden),
            "squash": squash, "dtype": config.train.compute_dtype}
    if config.observation == "image":
        window = window_length(config.lam.context, config.lam.future)
        idm_encoder = {k: v for k, v in config.lam.space_time.items() if k != "residual"}  # an FDM option
        spec.update(kind="image", encoder=image_encoder or config.policy.image_encoder,
                    impala=config.policy.impala.to_dict(), space_time={**idm_encoder, "max_frames": window})
    return spec


def policy_spec(config, method, normalizer, out_dim, squash, decoder=None, encoder=None,
                image_encoder: str | None = None) -> dict:
    """The `policy.json` of a saved policy (see `clam_jax.rollout.saved_policy`)."""
    obs_dim, action_dim = task_dims(config.task)
    return {"method": method, "task": config.task, "obs_dim": obs_dim, "action_dim": action_dim,
            "observation": config.observation, "image_size": config.image_size,
            "proprio_dims": proprio_size(config),
            "max_steps": config.max_steps, "action_repeat": config.action_repeat,
            "normalizer": normalizer.to_dict(), "chunk": config.policy.chunk,
            "policy": policy_model(config, out_dim, squash, image_encoder),
            "decoder": decoder, "encoder": encoder, "config": config.to_dict()}


def padded_observations(config, normalizer, episodes: Episodes) -> np.ndarray:
    """Normalized observations padded for the LAM's windows (see `clam_jax.data.windows`)."""
    return pad_episodes(normalizer(episodes.observations), config.lam.context, config.lam.future)


def transition_observations(observations, normalizer):
    """Normalized o_t for t in 0..T-1, flattened over episodes: [N * T, *obs]."""
    current = normalizer(jax.tree.map(lambda x: x[:, :-1], observations))
    return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), current)


def episode_actions(episodes: Episodes) -> np.ndarray:
    """a_t for t in 0..T-1 of every episode: [N, T, A]."""
    return episodes.actions[:, :-1]


def transition_actions(episodes: Episodes) -> np.ndarray:
    """a_t for t in 0..T-1, flattened over episodes (aligned with `transition_observations` and `flat_windows`)."""
    return episode_actions(episodes).reshape(-1, episodes.actions.shape[-1])


def policy_targets(config, targets: np.ndarray) -> dict:
    """A policy's training targets from per-episode targets [N, T, D] (actions or latent actions), aligned with
    `transition_observations`: the chunks of `config.policy.chunk` steps from each t (`chunk_targets`)."""
    return chunk_targets(targets, config.policy.chunk)


def flat_windows(config, normalizer, episodes: Episodes) -> np.ndarray:
    """Every transition's LAM window as an MLP IDM's input (`clam_jax.data.windows.idm_inputs`, with
    `config.lam.difference_scale`): [N * T, features]."""
    padded = padded_observations(config, normalizer, episodes)
    windows = all_windows(padded, window_length(config.lam.context, config.lam.future))
    return np.asarray(idm_inputs(windows, config.lam.difference_scale))


def on_host(params):
    """Replicated device parameters as host arrays (this process's copy)."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), params)


def last_metrics(workdir: Path, stage: str) -> dict:
    """The last metrics logged by `stage` (e.g. "clam/stage1") in `<workdir>/metrics.jsonl`."""
    path = workdir / "metrics.jsonl"
    last = {}
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["stage"] == stage:
                last = record
    return last
