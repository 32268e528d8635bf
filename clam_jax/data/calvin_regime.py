"""The data regime of the paper's CALVIN experiment (Appendix A.3, Table 8), cut from converted play data.

D_unlabeled is a random fraction of all annotated segments (every task, the
target's included: the LAM pretrains on it); D_labeled the segments of a few
other tasks, with actions; D_unlabeled_expert the target task's segments, whose
actions only the privileged `bc_expert` reads. Segments come from the split
`config.data.split` of `clam_jax.data.calvin`'s output in `config.data.converted`.
"""
from pathlib import Path

import numpy as np

from clam_jax.data.episodes import read_episodes, read_statistics, write_episodes
from clam_jax.data.statistics import dataset_statistics
from clam_jax.envs.calvin import target_task
from clam_jax.errors import ConfigError, DataError


def converted_split(config, split: str | None = None) -> Path:
    """The converted dataset of `split` (default `config.data.split`), checked to exist."""
    if not config.data.converted:
        raise ConfigError("Set config.data.converted to the output of `python -m clam_jax.data.calvin` "
                          "(CALVIN's play data converted to clam_jax datasets).")
    path = Path(config.data.converted) / (split or config.data.split)
    if not (path / "statistics.json").exists():
        raise DataError(f"{path} is not a converted CALVIN split; run `python -m clam_jax.data.calvin "
                        f"--calvin_dir=<CALVIN download> --out={config.data.converted}` first.")
    return path


def regime_indices(tasks: list[str], config) -> dict[str, np.ndarray]:
    """Which segments (indices into `tasks`, each segment's task) make each dataset; drawn with config.seed."""
    tasks = np.asarray(tasks)
    target = target_task(config.task)
    rng = np.random.default_rng([config.seed, 0xCA1])
    unlabeled_count = max(1, round(config.data.unlabeled_fraction * len(tasks)))
    labeled = np.flatnonzero(np.isin(tasks, list(config.data.labeled.tasks)))
    expert = np.flatnonzero(tasks == target)
    chosen = {"unlabeled": np.sort(rng.choice(len(tasks), unlabeled_count, replace=False)),
              "labeled": _at_most(rng, labeled, config.data.labeled.episodes),
              "expert": _at_most(rng, expert, config.data.expert.episodes)}
    for name, what in (("labeled", f"tasks {list(config.data.labeled.tasks)}"), ("expert", f"task {target!r}")):
        if not len(chosen[name]):
            raise DataError(f"The converted CALVIN split has no segment of {what} for D_{name}; it has "
                            f"{sorted(set(tasks.tolist()))}.")
    return chosen


def _at_most(rng, indices: np.ndarray, count: int) -> np.ndarray:
    """`count` of `indices` drawn at random (all with count 0), in dataset order."""
    if count and count < len(indices):
        indices = rng.choice(indices, count, replace=False)
    return np.sort(indices)


def write_calvin_datasets(config, root: Path, names: list[str]) -> None:
    """Writes datasets `names` of the regime into `root`, each with its statistics and source segments."""
    source = converted_split(config)
    calvin = read_statistics(source)["calvin"]
    if calvin["action_repeat"] != config.action_repeat:
        raise ConfigError(f"{source} was converted at {calvin['action_repeat']} frames per step but "
                          f"config.action_repeat={config.action_repeat}; convert again with --action_repeat="
                          f"{config.action_repeat} or change the config.")
    indices = regime_indices(calvin["tasks"], config)
    for name in names:
        episodes = read_episodes(source, indices[name])
        stats = {**dataset_statistics(episodes), "source": str(source),
                 "segments": [calvin["frames"][i] for i in indices[name]]}
        write_episodes(root / name, episodes, stats)
        print(f"{name}: {episodes.num_episodes} CALVIN segments of {len(stats['behaviors'])} tasks")
