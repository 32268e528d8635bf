"""Generates the three datasets of the CLAM data regime for one task.

  python -m clam_jax.collect --config=configs/metaworld.py:quick --workdir=runs/quick
  python -m clam_jax.collect --config=configs/dmc.py:quick --config.task=hopper-hop --workdir=runs/hopper

MetaWorld: scripted and noisy behaviours (`clam_jax.envs.collection`). CALVIN: segments of its
converted play data (`clam_jax.data.calvin_regime`; no simulation). dm_control and
gymnasium's MuJoCo locomotion: a SAC agent learns the task online (checkpointed in `<workdir>/data/agent`, so an
interrupted collection resumes) and its buffer and final policy make the datasets
(`clam_jax.envs.locomotion`), with the reference scores of the normalized return.

Writes `<workdir>/data/{unlabeled,labeled,expert}` (D_unlabeled, D_labeled,
D_unlabeled_expert), each a TFDS RLDS dataset with a `statistics.json`.
With `config.image_size` > 0, every MetaWorld step also holds the corner camera's
frame at that size, rendered headless (`MUJOCO_GL`, default egl).
Datasets already present are kept.
"""
import json
import time
from pathlib import Path

import numpy as np
import tqdm

from clam_jax.cli import FLAGS, run_cli, use_headless_rendering
from clam_jax.data.calvin_regime import write_calvin_datasets
from clam_jax.data.episodes import Episodes, dataset_exists, read_statistics, write_episodes
from clam_jax.data.statistics import dataset_statistics
from clam_jax.envs.agent import AgentSchedule, train_agent
from clam_jax.envs.collection import EpisodeCollector, episode_spec
from clam_jax.envs.locomotion import locomotion_datasets
from clam_jax.envs.sac import SAC
from clam_jax.envs.tasks import LOCOMOTION_SUITES, make_task, suite_of
from clam_jax.errors import ConfigError, DataError
from clam_jax.training.checkpoints import TrainStateCheckpoints
from clam_jax.validation import validate_config

DATASETS = ("unlabeled", "labeled", "expert")
_MAX_ATTEMPTS_PER_EPISODE = 50
_SIGNATURE_FILE = "collect_config.json"


def data_dir(workdir) -> Path:
    return Path(workdir) / "data"


def collection_signature(config) -> dict:
    images = {"image_size": config.image_size} if config.image_size else {}
    suite = suite_of(config.task)
    if suite in LOCOMOTION_SUITES:
        recipe = {"agent": config.agent.to_dict(), "data": config.data.to_dict()}
    elif suite == "calvin":
        recipe = {"calvin": {k: v for k, v in config.data.to_dict().items() if k != "calvin_dir"}}
    else:
        recipe = {"datasets": {name: config.data[name].to_dict() for name in DATASETS}}
    return {"task": config.task, "seed": config.seed, "max_steps": config.max_steps,
            "action_repeat": config.action_repeat, **images, **recipe}


def _check_signature(config, root: Path) -> None:
    """Refuses to mix datasets made with another task, seed or recipe into one workdir."""
    path = root / _SIGNATURE_FILE
    wanted = json.loads(json.dumps(collection_signature(config)))
    if path.exists():
        found = json.loads(path.read_text())
        if found != wanted:
            raise DataError(
                f"{root} holds datasets made with another config (task {found.get('task')!r}, "
                f"seed {found.get('seed')}); use a new --workdir for task {config.task!r}, seed {config.seed}.")
    else:
        root.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(wanted, indent=2))


def collect_dataset(collector: EpisodeCollector, config, name: str) -> tuple[Episodes, int]:
    """Collects dataset `name`; returns its episodes and how many were rolled out to get them."""
    spec = config.data[name]
    stream = DATASETS.index(name)
    behaviors = tuple(spec.behaviors)
    kept, attempted = [], 0
    max_attempts = spec.episodes * (_MAX_ATTEMPTS_PER_EPISODE if spec.only_failures else 1)
    with tqdm.tqdm(total=spec.episodes, desc=f"collect {name}", unit="ep") as bar:
        start = 0
        while len(kept) < spec.episodes and start < max_attempts:
            count = min(max(spec.episodes - len(kept), collector.num_workers * 4), max_attempts - start)
            specs = [episode_spec(config.seed, stream, i, behaviors) for i in range(start, start + count)]
            for episode in collector.run(specs):
                if len(kept) < spec.episodes:
                    attempted += 1
                    if not (spec.only_failures and episode["success"]):
                        kept.append(episode)
                        bar.update(1)
            start += count
    if len(kept) < spec.episodes:
        raise ConfigError(
            f"Only {len(kept)} of {max_attempts} {name} episodes failed the task; use noisier "
            f"behaviours in config.data.{name}.behaviors or set only_failures=False.")
    episodes = Episodes(**{key: np.stack([e[key] for e in kept]) for key in
                           ("observations", "actions", "rewards", "success", "behavior")},
                        images=np.stack([e["images"] for e in kept]) if config.image_size else None)
    return episodes, attempted


def collect_datasets(config, workdir) -> dict[str, dict]:
    """Collects whichever datasets are missing and returns every dataset's statistics."""
    validate_config(config)
    root = data_dir(workdir)
    _check_signature(config, root)
    missing = [name for name in DATASETS if not dataset_exists(root / name)]
    suite = suite_of(config.task)
    if missing and suite in LOCOMOTION_SUITES:
        collect_locomotion_datasets(config, root, missing)
    elif missing and suite == "calvin":
        write_calvin_datasets(config, root, missing)
    elif missing:
        with EpisodeCollector(config.task, max_steps=config.max_steps, action_repeat=config.action_repeat,
                              num_workers=config.data.num_workers, image_size=config.image_size) as collector:
            for name in missing:
                start = time.perf_counter()
                episodes, attempted = collect_dataset(collector, config, name)
                wall_time = time.perf_counter() - start
                stats = {**dataset_statistics(episodes), "episodes_attempted": attempted,
                         "collect_wall_time_s": wall_time, "collect_workers": collector.num_workers}
                if config.image_size:
                    stats["image_size"] = config.image_size
                    stats["frames_per_s"] = attempted * (config.max_steps + 1) / wall_time
                write_episodes(root / name, episodes, stats)
                print(f"{name}: {stats['num_episodes']} episodes kept of {attempted}, success rate "
                      f"{stats['success_rate']:.2f}, return {stats['return_mean']:.1f}, step motion "
                      f"{stats['step_motion']:.3f}")
    return {name: read_statistics(root / name) for name in DATASETS}


def collect_locomotion_datasets(config, root: Path, names: list[str]) -> None:
    """Trains (or resumes) the SAC data agent, then writes datasets `names` cut from its run."""
    a = config.agent
    env = make_task(config.task, max_steps=config.max_steps, action_repeat=config.action_repeat)
    sac = SAC(env.obs_dim, env.action_dim, hidden=tuple(a.hidden), lr=a.lr, discount=a.discount, tau=a.tau,
              init_temperature=a.init_temperature)
    start = time.perf_counter()
    checkpoints = TrainStateCheckpoints(root / "agent")
    run = train_agent(env, sac, AgentSchedule(episodes=a.episodes, random_steps=a.random_steps,
                                              updates_per_step=a.updates_per_step, batch_size=a.batch_size),
                      seed=config.seed, checkpoints=checkpoints, checkpoint_every=a.checkpoint_every,
                      desc=f"SAC on {config.task}")
    checkpoints.close()
    agent_time = time.perf_counter() - start
    datasets, scores, cut = locomotion_datasets(
        run, env, sac, seed=config.seed, random_steps=a.random_steps, medium_fraction=config.data.medium_fraction,
        labeled_episodes=config.data.labeled.episodes, expert_episodes=config.data.expert.episodes,
        reference_episodes=config.data.reference_episodes)
    env.close()
    for name in names:
        stats = {**dataset_statistics(datasets[name]), "reference_scores": scores, **cut,
                 "agent_wall_time_s": agent_time, "collect_wall_time_s": time.perf_counter() - start}
        write_episodes(root / name, datasets[name], stats)
        print(f"{name}: {stats['num_episodes']} episodes, return {stats['return_mean']:.1f} "
              f"(random {scores['random']:.1f}, expert {scores['expert']:.1f}), step motion {stats['step_motion']:.3f}")


def main(argv):
    del argv
    use_headless_rendering()  # frames, and dm_control (which otherwise opens GLFW on import)
    run_cli(lambda: collect_datasets(FLAGS.config, FLAGS.workdir))


if __name__ == "__main__":
    from absl import app

    app.run(main)
