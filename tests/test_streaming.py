"""Stage-1 chunks streamed from TFDS datasets through grain, and their prefetch to the devices.

Observations encode where they come from, [episode, step, dataset id], so every
window can be traced back to its episode and transition.
"""
import dataclasses
import multiprocessing

import jax
import numpy as np
import pytest

from clam_jax.data.episodes import Episodes, write_episodes
from clam_jax.data.statistics import Normalizer, PartsNormalizer, PixelNormalizer
from clam_jax.data.streaming import DevicePrefetcher, make_stage1_loader, measure_input_rate
from clam_jax.data.windows import pad_episodes
from clam_jax.errors import ConfigError, DataError
from clam_jax.training.sharding import chunk_sharding, make_mesh

CONTEXT, FUTURE = 2, 1
WINDOW = CONTEXT + 2 + FUTURE
UNLABELED, LABELED = 0, 1
# Powers of two keep normalization exact in float32, so frames can be decoded exactly.
NORMALIZER = Normalizer(mean=np.array([1.0, 2.0, 3.0], np.float32), std=np.array([2.0, 4.0, 0.5], np.float32))


def traced_episodes(num_episodes: int, num_steps: int, dataset_id: int) -> Episodes:
    episode, step = np.meshgrid(np.arange(num_episodes), np.arange(num_steps + 1), indexing="ij")
    observations = np.stack([episode, step, np.full_like(step, dataset_id)], -1).astype(np.float32)
    actions = np.stack([episode, step + 0.5], -1).astype(np.float32)
    return Episodes(observations=observations, actions=actions,
                    rewards=np.zeros((num_episodes, num_steps + 1), np.float32),
                    success=np.zeros(num_episodes, bool), behavior=np.array(["expert"] * num_episodes))


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streaming")
    unlabeled, labeled = traced_episodes(6, 9, UNLABELED), traced_episodes(3, 7, LABELED)
    write_episodes(root / "unlabeled", unlabeled, {})
    write_episodes(root / "labeled", labeled, {})
    return {"unlabeled_dir": root / "unlabeled", "labeled_dir": root / "labeled",
            "unlabeled": unlabeled, "labeled": labeled}


def loader(datasets, **overrides):
    kwargs = dict(unlabeled_dir=datasets["unlabeled_dir"], labeled_dir=datasets["labeled_dir"],
                  normalizer=NORMALIZER, context=CONTEXT, future=FUTURE, batch_size=8, labeled_batch_size=4,
                  steps_per_dispatch=4, seed=0, num_workers=0, windows_per_episode=3, process_index=0,
                  process_count=1)
    return make_stage1_loader(**(kwargs | overrides))


def take(dataset, count: int) -> list[dict]:
    iterator = iter(dataset)
    try:
        return [next(iterator) for _ in range(count)]
    finally:
        iterator.close()


def denormalize(windows: np.ndarray) -> np.ndarray:
    return windows * NORMALIZER.std + NORMALIZER.mean


def transitions(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(episode, t) of each window, read from its current frame."""
    current = denormalize(windows)[..., CONTEXT, :]
    return current[..., 0].astype(int), current[..., 1].astype(int)


def assert_true_windows(windows: np.ndarray, episodes: Episodes, dataset_id: int):
    padded = pad_episodes(episodes.observations, CONTEXT, FUTURE)
    episode, t = transitions(windows)
    assert (denormalize(windows)[..., 2] == dataset_id).all()
    assert ((0 <= t) & (t < episodes.num_steps)).all()
    expected = NORMALIZER(padded[episode[..., None], t[..., None] + np.arange(WINDOW)])
    np.testing.assert_array_equal(windows, expected)


def test_chunks_are_normalized_windows_of_padded_episodes_with_their_actions(datasets):
    for chunk in take(loader(datasets), 3):
        assert {k: (v.shape, v.dtype) for k, v in chunk.items()} == {
            "unlabeled": ((4, 8, WINDOW, 3), np.float32), "labeled": ((4, 4, WINDOW, 3), np.float32),
            "labeled_actions": ((4, 4, 2), np.float32)}
        assert_true_windows(chunk["unlabeled"], datasets["unlabeled"], UNLABELED)
        assert_true_windows(chunk["labeled"], datasets["labeled"], LABELED)
        episode, t = transitions(chunk["labeled"])
        np.testing.assert_array_equal(chunk["labeled_actions"], datasets["labeled"].actions[episode, t])


def test_frames_stream_with_their_proprioception(tmp_path):
    """Frames encode (episode, step) in their pixels as the states do in their first entries: both parts of
    every window come from the same steps, the proprioception normalized with its own moments."""
    episodes = traced_episodes(4, 6, LABELED)
    code = 16 * episodes.observations[..., 0] + episodes.observations[..., 1]
    images = np.broadcast_to(code[..., None, None, None], (*code.shape, 4, 4, 3)).astype(np.uint8)
    write_episodes(tmp_path / "frames", dataclasses.replace(episodes, images=images), {})
    proprio = Normalizer(mean=NORMALIZER.mean[:2], std=NORMALIZER.std[:2])
    normalizer = PartsNormalizer({"image": PixelNormalizer(), "proprio": proprio})
    chunk, = take(loader({"unlabeled_dir": tmp_path / "frames", "labeled_dir": tmp_path / "frames"},
                         normalizer=normalizer, observation_key="image", proprio_dims=2), 1)
    for name, batch in (("unlabeled", 8), ("labeled", 4)):
        windows = chunk[name]
        assert windows["image"].shape == (4, batch, WINDOW, 4, 4, 3) and windows["image"].dtype == np.uint8
        assert windows["proprio"].shape == (4, batch, WINDOW, 2) and windows["proprio"].dtype == np.float32
        state = windows["proprio"] * proprio.std + proprio.mean
        np.testing.assert_array_equal(windows["image"][..., 0, 0, 0], 16 * state[..., 0] + state[..., 1])
    episode, t = (chunk["labeled"]["proprio"][..., CONTEXT, :] * proprio.std + proprio.mean).astype(int).T
    np.testing.assert_array_equal(chunk["labeled_actions"], episodes.actions[episode.T, t.T])


def test_episode_boundaries_are_padded_with_first_and_last_frames(datasets):
    windows = np.concatenate([c["unlabeled"].reshape(-1, WINDOW, 3) for c in take(loader(datasets), 8)])
    _, t = transitions(windows)
    steps = denormalize(windows)[..., 1]
    first, last = windows[t == 0], windows[t == datasets["unlabeled"].num_steps - 1]
    assert len(first) and len(last)
    np.testing.assert_array_equal(denormalize(first)[:, :CONTEXT + 1, 1], 0)
    np.testing.assert_array_equal(denormalize(last)[:, CONTEXT + 1:, 1], datasets["unlabeled"].num_steps)
    assert ((np.diff(steps, axis=1) == 0) | (np.diff(steps, axis=1) == 1)).all()


def test_same_seed_same_stream_and_resume_mid_stream(datasets):
    first, again = take(loader(datasets), 4), take(loader(datasets), 4)
    other = take(loader(datasets, seed=1), 1)[0]
    resumed = take(loader(datasets, first_chunk=2), 2)
    for a, b in zip(first, again):
        jax.tree.map(np.testing.assert_array_equal, a, b)
    jax.tree.map(np.testing.assert_array_equal, resumed, first[2:])
    assert not np.array_equal(other["unlabeled"], first[0]["unlabeled"])
    assert not np.array_equal(first[0]["unlabeled"], first[1]["unlabeled"])


def test_stream_is_the_same_with_worker_processes(datasets):
    in_process = take(loader(datasets), 5)
    iterator = iter(loader(datasets, num_workers=2))
    try:
        with_workers = [next(iterator) for _ in range(5)]
        workers = multiprocessing.active_children()
    finally:
        iterator.close()
    assert len(workers) >= 2
    for a, b in zip(in_process, with_workers):
        jax.tree.map(np.testing.assert_array_equal, a, b)


def test_sampling_covers_every_transition_about_uniformly(datasets):
    chunks = take(loader(datasets, batch_size=16, steps_per_dispatch=8, windows_per_episode=4), 20)
    episode, t = transitions(np.concatenate([c["unlabeled"] for c in chunks]))
    counts = np.zeros((6, 9))
    np.add.at(counts, (episode.ravel(), t.ravel()), 1)
    expected = counts.sum() / counts.size  # about 47 per transition
    assert (counts.sum(1) > 0.8 * 9 * expected).all() and (counts.sum(1) < 1.2 * 9 * expected).all()
    assert (counts > 0.4 * expected).all() and (counts < 1.8 * expected).all()


def test_windows_of_one_episode_read_go_to_different_steps(datasets):
    """Batches hold no more same-episode pairs than i.i.d. draws would (14.7 if reads stayed together)."""
    chunks = take(loader(datasets, windows_per_episode=4), 20)
    episode, _ = transitions(np.concatenate([c["unlabeled"] for c in chunks]))  # [steps, batch]
    same_episode_pairs = ((episode[:, :, None] == episode[:, None, :]).sum((1, 2)) - 8) / 2
    iid_expectation = 8 * 7 / 2 / 6
    assert same_episode_pairs.mean() < 1.5 * iid_expectation


def test_each_process_draws_its_own_half_of_the_global_batch(datasets):
    halves = [take(loader(datasets, process_index=i, process_count=2), 1)[0] for i in (0, 1)]
    for half in halves:
        assert half["unlabeled"].shape[:2] == (4, 4) and half["labeled"].shape[:2] == (4, 2)
        assert half["labeled_actions"].shape[:2] == (4, 2)
    assert not np.array_equal(halves[0]["unlabeled"], halves[1]["unlabeled"])
    assert not np.array_equal(halves[0]["labeled"], halves[1]["labeled"])


def test_device_prefetcher_gives_global_arrays_split_over_the_batch_axis(datasets):
    sharding = chunk_sharding(make_mesh())
    host = take(loader(datasets, labeled_batch_size=8), 3)
    with DevicePrefetcher(loader(datasets, labeled_batch_size=8), sharding, size=2) as prefetcher:
        device = [next(prefetcher) for _ in range(3)]
    assert len(jax.devices()) == 8
    for h, d in zip(host, device):
        for key in h:
            assert isinstance(d[key], jax.Array) and d[key].sharding == sharding
            assert {s.data.shape[1] for s in d[key].addressable_shards} == {h[key].shape[1] // 8}
            np.testing.assert_array_equal(np.asarray(d[key]), h[key])


def test_device_prefetcher_raises_loader_errors_in_the_consumer():
    sharding = chunk_sharding(make_mesh())

    def failing():
        yield {"x": np.zeros((2, 8), np.float32)}
        raise ValueError("disk on fire")

    with DevicePrefetcher(failing(), sharding) as prefetcher:
        assert next(prefetcher)["x"].shape == (2, 8)
        with pytest.raises(ValueError, match="disk on fire"):
            next(prefetcher)
        with pytest.raises(StopIteration):
            next(prefetcher)


def test_closing_the_prefetcher_stops_it_and_closes_the_loader():
    def endless():
        while True:
            yield {"x": np.ones((1, 8), np.float32)}

    chunks = endless()
    prefetcher = DevicePrefetcher(chunks, chunk_sharding(make_mesh()), size=3)
    next(prefetcher)
    prefetcher.close()
    assert chunks.gi_frame is None  # the generator was closed
    with pytest.raises(StopIteration):
        next(prefetcher)


def test_measure_input_rate_with_and_without_the_devices(datasets):
    for sharding in (None, chunk_sharding(make_mesh())):
        rate = measure_input_rate(loader(datasets, labeled_batch_size=8), 0.05, sharding)
        assert rate["chunks_per_s"] > 0 and rate["windows_per_s"] == pytest.approx(4 * 16 * rate["chunks_per_s"])


def test_missing_dataset_is_reported(datasets, tmp_path):
    with pytest.raises(DataError, match="missing or incomplete.*clam_jax.collect"):
        loader(datasets, unlabeled_dir=tmp_path / "nothing")


def test_episode_without_a_transition_is_reported(datasets, tmp_path):
    write_episodes(tmp_path / "short", traced_episodes(2, 0, LABELED), {})
    with pytest.raises(DataError, match="1 observation.*no window"):
        loader(datasets, labeled_dir=tmp_path / "short")


def test_observation_size_must_match_the_normalizer(datasets):
    normalizer = Normalizer(mean=np.zeros(4, np.float32), std=np.ones(4, np.float32))
    with pytest.raises(DataError, match=r"shape \(3,\) but the normalizer has \(4,\)"):
        loader(datasets, normalizer=normalizer)


def test_batch_must_split_evenly_over_processes(datasets):
    with pytest.raises(ConfigError, match="labeled_batch_size=3 must be a multiple of the 2 processes"):
        loader(datasets, labeled_batch_size=3, process_index=1, process_count=2)
