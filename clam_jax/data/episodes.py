"""RLDS episodes stored as TFDS datasets in the array_record format, without TensorFlow.

An episode of T policy steps has T + 1 RLDS steps: step t holds `observation[t]`
and the `action[t]` taken there (which produced `observation[t + 1]`); the last
step holds the final observation with a zero action and `is_last=True`.
Datasets collected with images hold each step's rendered frame (uint8, stored
raw) as `image` beside the state `observation`.
A dataset lives in `<dir>/clam_episodes/<version>/` and is read back with
`tfds.builder_from_directory(...).as_data_source(split="train")`.
"""
import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np

from clam_jax.errors import DataError

BUILDER_NAME = "clam_episodes"
VERSION = "1.0.0"
STATS_FILE = "statistics.json"


@dataclasses.dataclass
class Episodes:
    """A dataset held as dense arrays: N episodes of T steps (T + 1 observations)."""

    observations: np.ndarray  # [N, T + 1, obs_dim] float32 (or what the models see: `clam_jax.data.observations`)
    actions: np.ndarray  # [N, T + 1, act_dim] float32; actions[:, T] is padding
    rewards: np.ndarray  # [N, T + 1] float32; rewards[:, t] follows actions[:, t]
    success: np.ndarray  # [N] bool
    behavior: np.ndarray  # [N] str
    images: np.ndarray | None = None  # [N, T + 1, H, W, 3] uint8 frames of the observations, if rendered

    @property
    def num_episodes(self) -> int:
        return self.actions.shape[0]

    @property
    def num_steps(self) -> int:
        return self.actions.shape[1] - 1

    def head(self, count: int) -> "Episodes":
        """The first `count` episodes."""
        return self.take(slice(count))

    def take(self, indices) -> "Episodes":
        """The episodes at `indices`, in that order."""
        return dataclasses.replace(self, **{f.name: getattr(self, f.name)[indices] for f in dataclasses.fields(self)
                                            if getattr(self, f.name) is not None})


def concatenate_episodes(first: Episodes, second: Episodes) -> Episodes:
    """`first`'s episodes followed by `second`'s; both must have the same number of steps and the same fields."""
    if first.num_steps != second.num_steps:
        raise DataError(f"Episodes of {first.num_steps} and {second.num_steps} steps cannot form one dataset.")
    if (first.images is None) != (second.images is None):
        raise DataError("Only one of the two datasets has frames; they cannot form one dataset.")
    return Episodes(**{f.name: None if getattr(first, f.name) is None
                       else np.concatenate([getattr(first, f.name), getattr(second, f.name)])
                       for f in dataclasses.fields(Episodes)})


def _builder_class():
    import tensorflow_datasets as tfds

    class ClamEpisodes(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Episodes handed over in memory, batch by batch, written as RLDS in array_record files."""

        VERSION = tfds.core.Version(VERSION)

        def __init__(self, *, batches, **kwargs):
            self._batches = batches
            super().__init__(**kwargs)

        def _info(self):
            example = next(iter(self._batches()))
            obs_dim = example.observations.shape[-1]
            act_dim = example.actions.shape[-1]
            images = example.images
            image = {} if images is None else {
                "image": tfds.features.Tensor(shape=images.shape[2:], dtype=np.uint8)}
            return tfds.core.DatasetInfo(
                builder=self,
                description="clam_jax episodes (RLDS): action[t] is taken at observation[t].",
                disable_shuffling=True,  # records in the order written: indices into a dataset stay meaningful
                features=tfds.features.FeaturesDict({
                    "steps": tfds.features.Dataset({
                        **image,
                        "observation": tfds.features.Tensor(shape=(obs_dim,), dtype=np.float32),
                        "action": tfds.features.Tensor(shape=(act_dim,), dtype=np.float32),
                        "reward": np.float32,
                        "is_first": np.bool_,
                        "is_last": np.bool_,
                        "is_terminal": np.bool_,
                    }),
                    "episode_metadata": {"success": np.bool_, "behavior": tfds.features.Text()},
                }),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            key = 0
            for eps in self._batches():
                yield from _examples(eps, key)
                key += eps.num_episodes

    return ClamEpisodes


def _examples(eps: Episodes, first_key: int):
    """(key, RLDS episode) pairs of a batch of episodes."""
    length = eps.num_steps + 1
    index = np.arange(length)
    for i in range(eps.num_episodes):
        yield first_key + i, {
            "steps": {
                "observation": eps.observations[i],
                "action": eps.actions[i],
                "reward": eps.rewards[i],
                "is_first": index == 0,
                "is_last": index == length - 1,
                "is_terminal": np.zeros(length, bool),
                **({} if eps.images is None else {"image": eps.images[i]}),
            },
            "episode_metadata": {"success": bool(eps.success[i]), "behavior": str(eps.behavior[i])},
        }


def dataset_exists(directory: str | os.PathLike) -> bool:
    return (Path(directory) / STATS_FILE).exists()


def write_episodes(directory: str | os.PathLike, episodes: Episodes, statistics: dict) -> None:
    """Writes `episodes` as a TFDS dataset in `directory`, all or nothing.

    The dataset is built in a temporary sibling folder and moved into place only
    when complete, so an interrupted write never leaves a half dataset behind and
    an existing dataset is never overwritten.
    """
    write_episode_batches(directory, lambda: [episodes], statistics)


def write_episode_batches(directory: str | os.PathLike, batches, statistics: dict) -> None:
    """`write_episodes` for a dataset too large to hold at once: `batches()` yields it as `Episodes` of the same
    step count and shapes, one batch in memory at a time (it is called more than once)."""
    directory = Path(directory)
    if directory.exists():
        raise DataError(f"Dataset {directory} already exists; delete it first to regenerate it.")
    tmp = directory.with_name(directory.name + ".incomplete")
    shutil.rmtree(tmp, ignore_errors=True)
    builder = _builder_class()(batches=batches, data_dir=str(tmp), file_format="array_record")
    builder.download_and_prepare()
    (tmp / STATS_FILE).write_text(json.dumps(statistics, indent=2))
    os.replace(tmp, directory)


def read_statistics(directory: str | os.PathLike) -> dict:
    return json.loads((Path(directory) / STATS_FILE).read_text())


def _corrupt(directory, error: Exception) -> DataError:
    return DataError(
        f"Dataset {directory} could not be read ({type(error).__name__}: {error}); it is corrupt, "
        "delete the folder and rerun `python -m clam_jax.collect` to regenerate it.")


def open_data_source(directory: str | os.PathLike):
    """(builder, random-access source of episode records) of a dataset written by `write_episodes`.

    Steps are not decoded one by one (`SkipDecoding`): a record's "steps" is a
    dict of whole-episode arrays, about 10x faster to read.
    """
    import tensorflow_datasets as tfds

    directory = Path(directory)
    path = directory / BUILDER_NAME / VERSION
    if not dataset_exists(directory) or not path.exists():
        raise DataError(
            f"Dataset {directory} is missing or incomplete; run `python -m clam_jax.collect` "
            "with the same config and workdir to generate it."
        )
    try:
        builder = tfds.builder_from_directory(str(path))
        return builder, builder.as_data_source(split="train", decoders={"steps": tfds.decode.SkipDecoding()})
    except Exception as e:  # TFDS raises many kinds of errors for damaged files.
        raise _corrupt(directory, e) from e


def read_episodes(directory: str | os.PathLike, indices=None) -> Episodes:
    """Reads a dataset written by `write_episodes` into dense arrays, with clear errors; only the episodes at
    `indices` if given."""
    _, source = open_data_source(directory)
    try:
        records = [source[int(i)] for i in (range(len(source)) if indices is None else indices)]
        observations = np.stack([r["steps"]["observation"] for r in records])
        actions = np.stack([r["steps"]["action"] for r in records])
        rewards = np.stack([r["steps"]["reward"] for r in records])
        images = np.stack([r["steps"]["image"] for r in records]) if "image" in records[0]["steps"] else None
    except Exception as e:  # TFDS raises many kinds of errors for damaged files.
        raise _corrupt(directory, e) from e
    if len(records) == 0:
        raise DataError(f"Dataset {directory} has no episodes; delete it and regenerate it.")
    if not (np.isfinite(observations).all() and np.isfinite(actions).all()):
        raise DataError(
            f"Dataset {directory} contains NaN or infinite values; delete it and regenerate it."
        )
    meta = [r["episode_metadata"] for r in records]
    behavior = np.array([m["behavior"].decode() if isinstance(m["behavior"], bytes) else str(m["behavior"])
                         for m in meta])
    return Episodes(
        observations=observations.astype(np.float32),
        actions=actions.astype(np.float32),
        rewards=rewards.astype(np.float32),
        success=np.array([bool(m["success"]) for m in meta]),
        behavior=behavior,
        images=None if images is None else images.astype(np.uint8),
    )
