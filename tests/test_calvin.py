"""CALVIN: the converter on data written in CALVIN's released layout, the Table 8 regime, and training without
CALVIN's simulator."""
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clam_jax.cli import load_config
from clam_jax.data.calvin import convert_split
from clam_jax.data.calvin_regime import write_calvin_datasets
from clam_jax.data.episodes import read_episodes, read_statistics
from clam_jax.envs.tasks import require_simulator
from clam_jax.errors import ConfigError, DataError
from clam_jax.validation import validate_config

ROOT = Path(__file__).parents[1]
PLAY_EPISODES = [(1000, 1149), (1150, 1299)]  # CALVIN's frame numbers are global, not from 0
SEGMENTS = [(1000, 1064, "close_drawer"), (1060, 1124, "open_drawer"),
            (1140, 1204, "open_drawer"),  # crosses from one play episode into the next
            (1200, 1230, "close_drawer"),  # 31 frames: too short for 64 steps
            (1230, 1294, "close_drawer"), (1040, 1104, "open_drawer")]


def write_calvin_split(split_dir: Path) -> None:
    """A split as CALVIN releases it: one npz per frame, the play episodes' bounds, the language annotations.
    Frame f's robot_obs[0] is f, scene_obs[0] is 10 f, rel_actions[0] is f / 1000 and its gripper alternates."""
    split_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for f in range(PLAY_EPISODES[0][0], PLAY_EPISODES[-1][1] + 1):
        robot_obs, scene_obs = rng.normal(size=15), rng.normal(size=24)
        robot_obs[0], scene_obs[0] = f, 10 * f
        rel_actions = np.clip(rng.normal(size=7) * 0.3, -1, 1)
        rel_actions[0], rel_actions[6] = f / 1000, 1.0 if f % 2 else -1.0
        np.savez_compressed(
            split_dir / f"episode_{f:07d}.npz", actions=rng.normal(size=7), rel_actions=rel_actions,
            robot_obs=robot_obs, scene_obs=scene_obs, rgb_static=np.full((200, 200, 3), f % 256, np.uint8),
            rgb_gripper=np.zeros((84, 84, 3), np.uint8), depth_static=np.zeros((200, 200), np.float32))
    np.save(split_dir / "ep_start_end_ids.npy", np.array(PLAY_EPISODES))
    (split_dir / "lang_annotations").mkdir()
    annotations = {"language": {"ann": [f"please {task}" for _, _, task in SEGMENTS],
                                "task": [task for _, _, task in SEGMENTS],
                                "emb": np.zeros((len(SEGMENTS), 1, 384), np.float32)},
                   "info": {"episodes": [], "indx": [(start, end) for start, end, _ in SEGMENTS]}}
    np.save(split_dir / "lang_annotations" / "auto_lang_ann.npy", annotations, allow_pickle=True)


@pytest.fixture(scope="module")
def calvin_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("calvin") / "task_D_D"
    write_calvin_split(root / "training")
    write_calvin_split(root / "validation")
    return root


def convert(calvin_dir, out, **kwargs):
    options = dict(steps=64, action_repeat=1, image_size=16, workers=1, shard_size=2) | kwargs
    return convert_split(calvin_dir / "training", out, **options)


def test_segments_become_episodes_aligned_with_their_actions_and_named_by_task(calvin_dir, tmp_path):
    statistics = convert(calvin_dir, tmp_path / "training")
    episodes = read_episodes(tmp_path / "training")
    assert statistics["calvin"]["skipped"] == {"too_short": 1, "crossing_episodes": 1}
    assert episodes.behavior.tolist() == ["close_drawer", "open_drawer", "close_drawer", "open_drawer"]
    assert statistics["calvin"]["frames"] == [[1000, 1064], [1060, 1124], [1230, 1294], [1040, 1104]]
    assert episodes.observations.shape == (4, 65, 39) and episodes.actions.shape == (4, 65, 7)
    assert episodes.images.shape == (4, 65, 16, 16, 3)
    for i, start in enumerate([1000, 1060, 1230, 1040]):
        frames = start + np.arange(65)
        np.testing.assert_array_equal(episodes.observations[i, :, 0], frames)  # robot_obs first
        np.testing.assert_array_equal(episodes.observations[i, :, 15], 10 * frames)  # then scene_obs
        np.testing.assert_allclose(episodes.actions[i, :-1, 0], frames[:-1] / 1000, rtol=1e-6)  # a_t at o_t
        np.testing.assert_array_equal(episodes.images[i, :, 0, 0, 0], frames % 256)
    assert not episodes.actions[:, -1].any() and episodes.success.all()
    assert not (tmp_path / ".shards" / "training").exists()  # the shards go once the dataset is written


def test_action_repeat_spans_frames_with_their_mean_motion_and_the_first_gripper_command(calvin_dir, tmp_path):
    convert(calvin_dir, tmp_path / "training", steps=32, action_repeat=2, image_size=0)
    episodes = read_episodes(tmp_path / "training")
    assert episodes.observations.shape == (4, 33, 39) and episodes.images is None
    frames = 1000 + 2 * np.arange(33)
    np.testing.assert_array_equal(episodes.observations[0, :, 0], frames)
    np.testing.assert_allclose(episodes.actions[0, :-1, 0], (frames[:-1] + 0.5) / 1000, rtol=1e-6)
    np.testing.assert_array_equal(episodes.actions[0, :-1, 6], -1.0)  # even frames close the gripper


def test_an_interrupted_conversion_resumes_from_its_shards(calvin_dir, tmp_path):
    missing = calvin_dir / "training" / "episode_0001230.npz"  # in the second shard's first segment
    moved = missing.rename(tmp_path / missing.name)
    try:
        with pytest.raises(FileNotFoundError):
            convert(calvin_dir, tmp_path / "resumed" / "training")
    finally:
        moved.rename(missing)
    shards = tmp_path / "resumed" / ".shards" / "training"
    assert not (shards / "shard_00001.npz").exists() and not (tmp_path / "resumed" / "training").exists()
    with np.load(shards / "shard_00000.npz") as shard:
        arrays = dict(shard)
    arrays["observations"][..., 1] = -7.0  # a mark that a shard converted again would not have
    np.savez(shards / "shard_00000.npz", **arrays)
    convert(calvin_dir, tmp_path / "resumed" / "training")
    convert(calvin_dir, tmp_path / "straight" / "training", workers=2)  # shards read by two processes
    resumed = read_episodes(tmp_path / "resumed" / "training")
    straight = read_episodes(tmp_path / "straight" / "training")
    assert (resumed.observations[:2, :, 1] == -7.0).all()  # the finished shard was kept
    np.testing.assert_array_equal(resumed.observations[2:], straight.observations[2:])
    np.testing.assert_array_equal(resumed.actions, straight.actions)
    np.testing.assert_array_equal(resumed.images, straight.images)

    other = tmp_path / "other" / ".shards" / "training"
    other.mkdir(parents=True)
    (other / "params.json").write_text(json.dumps({"steps": 3}))
    with pytest.raises(DataError, match="shards of a conversion with other settings"):
        convert(calvin_dir, tmp_path / "other" / "training")


def test_annotations_that_would_run_code_are_refused(calvin_dir, tmp_path):
    split = tmp_path / "training"
    split.mkdir()
    np.save(split / "ep_start_end_ids.npy", np.array(PLAY_EPISODES))
    (split / "lang_annotations").mkdir()

    class Payload:
        def __reduce__(self):
            return (subprocess.call, (["touch", str(tmp_path / "ran")],))

    np.save(split / "lang_annotations" / "auto_lang_ann.npy", np.array([Payload()], dtype=object),
            allow_pickle=True)
    with pytest.raises(pickle.UnpicklingError, match="refused to load subprocess.call"):
        convert(tmp_path, tmp_path / "out" / "poisoned")
    assert not (tmp_path / "ran").exists()


def calvin_config(converted):
    config = load_config(ROOT / "configs" / "calvin.py", "tiny")
    config.data.converted = str(converted)
    config.data.labeled.tasks = ("open_drawer",)
    return config


def test_table_8_regime_keeps_the_target_task_out_of_the_labelled_data(calvin_dir, tmp_path):
    convert(calvin_dir, tmp_path / "converted" / "training")
    config = calvin_config(tmp_path / "converted")
    write_calvin_datasets(config, tmp_path / "data", ["unlabeled", "labeled", "expert"])
    datasets = {name: read_episodes(tmp_path / "data" / name) for name in ("unlabeled", "labeled", "expert")}
    assert datasets["unlabeled"].num_episodes == 2  # half of the 4 segments (the tiny preset's fraction)
    assert set(datasets["labeled"].behavior) == {"open_drawer"} and datasets["labeled"].num_episodes == 2
    assert set(datasets["expert"].behavior) == {"close_drawer"} and datasets["expert"].num_episodes == 2
    assert read_statistics(tmp_path / "data" / "expert")["segments"] == [[1000, 1064], [1230, 1294]]
    config.action_repeat = 7
    with pytest.raises(ConfigError, match="converted at 1 frames per step but config.action_repeat=7"):
        write_calvin_datasets(config, tmp_path / "other", ["labeled"])


@pytest.mark.parametrize("change,message", [
    (lambda c: c.data.labeled.update(tasks=("close_drawer",)), "holds the target task 'close_drawer'"),
    (lambda c: c.data.labeled.update(tasks=("open_the_fridge",)), "tasks CALVIN does not: ['open_the_fridge']"),
    (lambda c: c.data.update(converted=""), "Set config.data.converted"),
    (lambda c: setattr(c, "task", "assembly-v3"), "use it with configs/metaworld.py"),
])
def test_bad_calvin_configs_are_refused(tmp_path, change, message):
    config = calvin_config(tmp_path)
    change(config)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        validate_config(config)


def test_training_works_without_calvin_and_evaluation_says_what_to_install(calvin_dir, tmp_path):
    with pytest.raises(ConfigError, match="needs its simulator, which is not on PyPI"):
        require_simulator("calvin-close_drawer")
    for split in ("training", "validation"):
        convert(calvin_dir, tmp_path / "converted" / split, image_size=0)
    done = subprocess.run([sys.executable, "-m", "clam_jax.train", "--config=configs/calvin.py:tiny",
                           f"--config.data.converted={tmp_path / 'converted'}", "--config.methods=('clam',)",
                           "--config.lam.kind=mlp",  # the tiny transformer's compile time buys nothing here
                           "--config.data.labeled.tasks=('open_drawer',)", f"--workdir={tmp_path / 'run'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: Evaluating in CALVIN needs its simulator")
    spec = json.loads((tmp_path / "run" / "clam" / "policy" / "policy.json").read_text())
    assert spec["task"] == "calvin-close_drawer" and spec["action_dim"] == 7 and spec["obs_dim"] == 39
    assert read_statistics(tmp_path / "run" / "data" / "labeled")["behaviors"].keys() == {"open_drawer"}
