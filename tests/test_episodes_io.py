"""RLDS episodes in TFDS array_record format: round trip and damaged datasets."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from clam_jax.data.episodes import BUILDER_NAME, VERSION, Episodes, read_episodes, write_episodes
from clam_jax.data.statistics import Normalizer, dataset_statistics, step_motion
from clam_jax.errors import DataError


def make_episodes(n=3, steps=5, obs_dim=39, act_dim=4, seed=0):
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, (n, steps + 1, act_dim)).astype(np.float32)
    actions[:, -1] = 0
    return Episodes(
        observations=rng.normal(size=(n, steps + 1, obs_dim)).astype(np.float32),
        actions=actions,
        rewards=rng.uniform(size=(n, steps + 1)).astype(np.float32),
        success=np.array([True, False, False][:n]),
        behavior=np.array(["expert", "random", "expert_noise0.5"][:n]),
    )


def test_round_trip_through_tfds_data_source(tmp_path):
    episodes = make_episodes()
    write_episodes(tmp_path / "d", episodes, dataset_statistics(episodes))
    back = read_episodes(tmp_path / "d")
    for field in ("observations", "actions", "rewards", "success", "behavior"):
        np.testing.assert_array_equal(getattr(back, field), getattr(episodes, field))
    source = tfds.builder_from_directory(str(tmp_path / "d" / BUILDER_NAME / VERSION)).as_data_source(split="train")
    steps = list(source[1]["steps"])
    assert len(source) == 3 and len(steps) == 6
    assert steps[0]["is_first"] and steps[-1]["is_last"] and not steps[2]["is_last"]
    np.testing.assert_array_equal(steps[2]["action"], episodes.actions[1, 2])
    assert back.images is None and "image" not in steps[0]


def test_frames_are_stored_beside_the_states_as_uint8(tmp_path):
    episodes = make_episodes()
    episodes.images = np.random.default_rng(1).integers(0, 256, (3, 6, 8, 8, 3), dtype=np.uint8)
    write_episodes(tmp_path / "d", episodes, dataset_statistics(episodes))
    back = read_episodes(tmp_path / "d")
    assert back.images.dtype == np.uint8
    np.testing.assert_array_equal(back.images, episodes.images)
    np.testing.assert_array_equal(back.observations, episodes.observations)
    source = tfds.builder_from_directory(str(tmp_path / "d" / BUILDER_NAME / VERSION)).as_data_source(split="train")
    np.testing.assert_array_equal(list(source[2]["steps"])[4]["image"], episodes.images[2, 4])


def test_statistics_and_normalizer():
    episodes = make_episodes()
    stats = dataset_statistics(episodes)
    assert stats["num_episodes"] == 3 and stats["num_transitions"] == 15
    assert stats["success_rate"] == pytest.approx(1 / 3)
    assert stats["behaviors"]["random"]["episodes"] == 1
    normalizer = Normalizer.from_statistics(stats)
    z = normalizer(episodes.observations.reshape(-1, 39))
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(Normalizer.from_dict(normalizer.to_dict()).std, normalizer.std)


def test_existing_dataset_is_never_overwritten(tmp_path):
    episodes = make_episodes()
    write_episodes(tmp_path / "d", episodes, dataset_statistics(episodes))
    with pytest.raises(DataError, match="already exists"):
        write_episodes(tmp_path / "d", make_episodes(seed=1), {})
    np.testing.assert_array_equal(read_episodes(tmp_path / "d").observations, episodes.observations)


def test_missing_dataset_says_how_to_make_it(tmp_path):
    with pytest.raises(DataError, match="missing or incomplete.*clam_jax.collect"):
        read_episodes(tmp_path / "nothing")


def test_corrupt_dataset_is_reported(tmp_path):
    episodes = make_episodes()
    write_episodes(tmp_path / "d", episodes, dataset_statistics(episodes))
    for shard in (tmp_path / "d" / BUILDER_NAME / VERSION).glob("*.array_record*"):
        shard.write_bytes(b"garbage" * 10)
    with pytest.raises(DataError, match="corrupt"):
        read_episodes(tmp_path / "d")


def test_nan_in_data_is_reported(tmp_path):
    episodes = make_episodes()
    episodes.observations[1, 2, 3] = np.nan
    write_episodes(tmp_path / "d", episodes, {"num_episodes": 3})
    with pytest.raises(DataError, match="NaN"):
        read_episodes(tmp_path / "d")


def test_step_motion_is_the_median_relative_step_of_the_dimensions_that_move():
    t = np.arange(11, dtype=np.float64)
    observations = np.zeros((2, 11, 4))
    observations[..., 0] = t  # steps of 1, spread std(0..10) = sqrt(10)
    observations[..., 1] = 2 * t  # the same relative step
    observations[..., 2] = 3 * t ** 2  # steps growing with t
    observations[1, :, 3] = 5.0  # differs between episodes, never moves within one: left out
    relative_square = np.sqrt(np.mean(np.diff(3 * t ** 2) ** 2)) / (3 * t ** 2).std()
    assert step_motion(observations) == pytest.approx(np.median([10 ** -0.5, 10 ** -0.5, relative_square]))
    assert step_motion(np.ones((2, 11, 3))) == 0.0
    assert dataset_statistics(make_episodes())["step_motion"] > 0
