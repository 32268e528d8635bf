"""Stage-1 batches streamed from the TFDS datasets on disk, for data that does not fit on the accelerator.

The alternative to sampling on the device (`clam_jax.data.windows`): a grain
pipeline reads episodes in worker processes and yields one host chunk per
jitted dispatch of K steps,

    {"unlabeled": [K, B, W, D], "labeled": [K, B_l, W, D], "labeled_actions": [K, B_l, A]}

(observations normalized: float32 states, or uint8 frames read from the
datasets' "image" feature; windows cut with `pad_episodes` semantics),
and `DevicePrefetcher` turns chunks into global `jax.Array`s split over the
"data" mesh axis, a few chunks ahead of the consumer.

One grain element is one chunk, computed from its index alone with an RNG
seeded by (seed, process index, chunk index). Grain hands worker w of n the
indices w, w + n, ... and interleaves their outputs back in index order, so
the stream is the same for any number of workers, and a resumed run can start
at any chunk (`first_chunk`).

Sampling. A record is a whole RLDS episode and is read and parsed whole, so
reading one per window would move T + 1 frames to use W of them (tolerable for
state vectors, prohibitive for images). One read therefore yields
`windows_per_episode` windows at distinct random t. Episodes are drawn
uniformly with replacement and t uniformly in the episode, so every window is
marginally uniform over the (episode, t) transitions when episodes have equal
length, as `write_episodes` writes them (with unequal lengths, transitions of
short episodes would be overweighted).
The approximation: windows are not independent. The windows of one read share
an episode; window j of a chunk goes to step j mod K, so the windows of one
read land in different steps and, while windows_per_episode <= K, no batch
holds two windows of the same read; the batches of one chunk share episodes.
Chunks are independent of each other.

Memory. Each worker builds one chunk at a time and holds at most
`per_worker_buffer_size` (1) finished chunks in its shared-memory queue, and
the main process buffers as many again per worker; `DevicePrefetcher` holds
`size` chunks on the device. So host memory is bounded by about
3 x num_workers chunks (1 with num_workers=0) of
K x (B + B_l) x W x (size of an observation: D x 4 bytes, or H x W x 3 for frames) bytes, plus
one decoded episode per worker.
"""
import dataclasses
import functools
import queue
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import grain
import jax
import numpy as np
from absl import flags
from jax.sharding import NamedSharding

from clam_jax.data.episodes import open_data_source
from clam_jax.data.observations import first_leaf, model_observations
from clam_jax.data.statistics import Normalizer, PartsNormalizer, PixelNormalizer
from clam_jax.data.windows import window_length
from clam_jax.errors import ConfigError, DataError


@dataclasses.dataclass(frozen=True)
class _WindowSampler:
    """Cuts random windows and their actions from one dataset; numpy (and jax.tree) only, runs in grain workers."""

    source: Any  # TFDS ArrayRecordDataSource: episode index -> RLDS record (picklable)
    directory: str
    normalizer: Normalizer | PixelNormalizer | PartsNormalizer
    observation_key: str  # the RLDS step feature the models see: "observation" (states) or "image"
    proprio_dims: int  # > 0: with frames, also the states' first entries (`clam_jax.data.observations`)
    context: int
    window: int
    windows_per_episode: int

    def sample(self, rng: np.random.Generator, steps: int, batch: int):
        """Windows [steps, batch, W, *obs] and actions [steps, batch, *act]; window j goes to step j % steps."""
        total = steps * batch
        reads = [self._read(rng, min(self.windows_per_episode, total - start))
                 for start in range(0, total, self.windows_per_episode)]
        windows_and_actions = jax.tree.map(lambda *parts: np.concatenate(parts), *reads)  # window j at row j
        return jax.tree.map(lambda x: np.ascontiguousarray(x.reshape(batch, steps, *x.shape[1:]).swapaxes(0, 1)),
                            windows_and_actions)

    def _read(self, rng: np.random.Generator, count: int):
        """`count` windows at distinct t (while the episode has enough) from one random episode."""
        episode = int(rng.integers(len(self.source)))
        steps = self.source[episode]["steps"]  # {"observation": [T + 1, *obs], "action": [T + 1, *act], ...}
        frames = steps["image"] if self.observation_key == "image" else None
        observations = model_observations(steps["observation"], frames, self.proprio_dims)
        transitions = _num_transitions(first_leaf(observations), self.directory, episode)
        t = rng.choice(transitions, size=count, replace=count > transitions)
        index = np.clip(t[:, None] + np.arange(self.window) - self.context, 0, transitions)
        return self.normalizer(jax.tree.map(lambda x: x[index], observations)), steps["action"][t]


def _num_transitions(observations: np.ndarray, directory: str, episode: int) -> int:
    if len(observations) < 2:
        raise DataError(
            f"Episode {episode} of {directory} has {len(observations)} observation(s), so no window: "
            "stage-1 windows need episodes of at least one transition; regenerate the dataset.")
    return len(observations) - 1


@dataclasses.dataclass(frozen=True)
class _ChunkSampler:
    """Chunk index -> this process's slice of one stage-1 chunk (the grain map function)."""

    unlabeled: _WindowSampler
    labeled: _WindowSampler
    steps: int
    batch_size: int
    labeled_batch_size: int
    seed: int
    process_index: int

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        seeds = np.random.SeedSequence([self.seed, self.process_index, index]).spawn(2)
        unlabeled, _ = self.unlabeled.sample(np.random.default_rng(seeds[0]), self.steps, self.batch_size)
        labeled, actions = self.labeled.sample(np.random.default_rng(seeds[1]), self.steps,
                                               self.labeled_batch_size)
        return {"unlabeled": unlabeled, "labeled": labeled, "labeled_actions": actions}


def _open_dataset(directory, normalizer: Normalizer | PixelNormalizer | PartsNormalizer, *, observation_key: str,
                  proprio_dims: int, context: int, window: int, windows_per_episode: int) -> _WindowSampler:
    """Opens a dataset written by `write_episodes` for random access, checking it against the config."""
    builder, source = open_data_source(directory)
    if len(source) == 0:
        raise DataError(f"Dataset {directory} has no episodes; delete it and regenerate it.")
    features = builder.info.features["steps"].feature
    if observation_key not in features:
        raise DataError(f"Dataset {directory} has no {observation_key!r} feature (it holds {sorted(features)}); "
                        "collect it with the config that trains on it (config.image_size for frames).")
    _num_transitions(source[0]["steps"][observation_key], str(directory), 0)
    observation_shape = tuple(features[observation_key].shape)
    if isinstance(normalizer, Normalizer) and observation_shape != np.shape(normalizer.mean):
        raise DataError(
            f"Observations of {directory} have shape {observation_shape} but the normalizer has "
            f"{np.shape(normalizer.mean)}; build it from the statistics of datasets of this environment.")
    return _WindowSampler(
        source=source, directory=str(directory), normalizer=normalizer, observation_key=observation_key,
        proprio_dims=proprio_dims, context=context, window=window, windows_per_episode=windows_per_episode)


def _check_config(**values) -> None:
    positive = ("batch_size", "labeled_batch_size", "steps_per_dispatch", "windows_per_episode")
    for name in positive:
        if values[name] < 1:
            raise ConfigError(f"{name}={values[name]} must be at least 1.")
    for name in ("context", "future", "seed", "num_workers", "first_chunk"):
        if values[name] < 0:
            raise ConfigError(f"{name}={values[name]} must be non-negative.")
    count, index = values["process_count"], values["process_index"]
    if not 0 <= index < count:
        raise ConfigError(f"process_index={index} must be in [0, process_count={count}).")
    for name in ("batch_size", "labeled_batch_size"):
        if values[name] % count:
            raise ConfigError(f"{name}={values[name]} must be a multiple of the {count} processes.")


def make_stage1_loader(unlabeled_dir, labeled_dir, normalizer: Normalizer | PixelNormalizer | PartsNormalizer, *,
                       context: int, future: int, batch_size: int, labeled_batch_size: int, steps_per_dispatch: int,
                       seed: int,
                       num_workers: int = 0, windows_per_episode: int = 8, first_chunk: int = 0,
                       process_index: int | None = None, process_count: int | None = None,
                       observation_key: str = "observation", proprio_dims: int = 0) -> grain.IterDataset:
    """An endless grain dataset of this process's stage-1 chunks (see the module docstring).

    Windows are cut from the RLDS step feature `observation_key` ("image" for frames), with
    `proprio_dims` > 0 together with the states' first entries (`clam_jax.data.observations`).
    `batch_size` and `labeled_batch_size` are global: each of the `process_count`
    processes (default: JAX's) yields its own [K, B / process_count, ...] slice,
    drawn with its own RNG. `num_workers` worker processes build chunks (0: in
    this process). Chunk i of a stream holds steps i*K .. i*K + K - 1, so a run
    resumed at step s passes `first_chunk = s // K`. Iterate it (and close the
    iterator, or hand it to `DevicePrefetcher`) to read.
    """
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    _check_config(batch_size=batch_size, labeled_batch_size=labeled_batch_size,
                  steps_per_dispatch=steps_per_dispatch, windows_per_episode=windows_per_episode,
                  context=context, future=future, seed=seed, num_workers=num_workers,
                  first_chunk=first_chunk, process_index=process_index, process_count=process_count)
    open_dataset = functools.partial(_open_dataset, normalizer=normalizer, observation_key=observation_key,
                                     proprio_dims=proprio_dims, context=context,
                                     window=window_length(context, future), windows_per_episode=windows_per_episode)
    sampler = _ChunkSampler(
        unlabeled=open_dataset(unlabeled_dir), labeled=open_dataset(labeled_dir), steps=steps_per_dispatch,
        batch_size=batch_size // process_count, labeled_batch_size=labeled_batch_size // process_count,
        seed=seed, process_index=process_index)
    if num_workers:
        _mark_absl_flags_parsed()
    # No reader threads: parallelism comes from the worker processes, and threads would buffer more chunks.
    chunks = grain.MapDataset.range(first_chunk, sys.maxsize).map(sampler).to_iter_dataset(
        grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    return chunks.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=1))


def _mark_absl_flags_parsed() -> None:
    """Lets grain start workers in programs that do not parse absl flags (tests, notebooks).

    grain 0.2.18 reads an absl flag when it starts worker processes, which fails
    before flags are parsed (google/grain#1355, fixed after 0.2.18); the CLI
    parses them, elsewhere every flag keeps its default.
    """
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


_END = object()


def _close(iterator) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


class DevicePrefetcher:
    """Iterator of chunks as global `jax.Array`s, placed on the devices by a background thread.

    Up to `size` chunks are read and copied to the devices ahead of the consumer,
    so input overlaps the training step; each process contributes its local slice
    (`jax.make_array_from_process_local_data`). An exception raised by the loader
    is re-raised by `next()` in the consumer. `close()` (or leaving a `with`
    block) stops the thread and closes the loader, which ends grain's workers.
    """

    def __init__(self, chunks: Iterable[dict], sharding: NamedSharding, size: int = 2):
        if size < 1:
            raise ConfigError(f"The prefetch size must be at least 1, got {size}.")
        self._chunks = iter(chunks)
        self._sharding = sharding
        self._ready = queue.Queue()
        self._free_slots = threading.Semaphore(size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="device-prefetch", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            while True:
                self._free_slots.acquire()
                if self._stop.is_set():
                    break
                chunk = next(self._chunks, _END)
                if chunk is _END:
                    break
                self._ready.put(jax.block_until_ready(self._to_device(chunk)))
        except Exception as e:  # handed to the consumer's thread
            self._ready.put(e)
        finally:
            self._ready.put(_END)
            _close(self._chunks)

    def _to_device(self, chunk: dict) -> dict:
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(self._sharding, x), chunk)

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        if self._stop.is_set():
            raise StopIteration
        item = self._ready.get()
        if item is _END:
            self._stop.set()
            raise StopIteration
        if isinstance(item, Exception):
            raise item
        self._free_slots.release()
        return item

    def close(self) -> None:
        self._stop.set()
        self._free_slots.release()  # wakes the thread if it waits for a free slot
        self._thread.join()

    def __enter__(self) -> "DevicePrefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _num_windows(chunk: dict) -> int:
    return sum(int(np.prod(chunk[key].shape[:2])) for key in ("unlabeled", "labeled"))


def measure_input_rate(loader: Iterable[dict], seconds: float, sharding: NamedSharding | None = None) -> dict:
    """Chunks/s and windows/s (unlabeled + labeled) that `loader` delivers with nothing else running.

    Reads for at least `seconds` after a first chunk, which pays for starting
    workers and is not timed. With a `sharding`, chunks also go through
    `DevicePrefetcher` onto the devices.
    """
    chunks = iter(loader) if sharding is None else DevicePrefetcher(loader, sharding)
    try:
        next(chunks)
        start, count, windows = time.perf_counter(), 0, 0
        while count == 0 or time.perf_counter() - start < seconds:
            windows += _num_windows(next(chunks))
            count += 1
        elapsed = time.perf_counter() - start
    finally:
        _close(chunks)
    return {"chunks_per_s": count / elapsed, "windows_per_s": windows / elapsed}
