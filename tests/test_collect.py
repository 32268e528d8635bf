"""Data generation in real MetaWorld: episode layout, determinism, the data regime, bad configs."""
import numpy as np
import pytest

from clam_jax.collect import collect_datasets, data_dir
from clam_jax.data.episodes import read_episodes
from clam_jax.envs.behaviors import check_behavior
from clam_jax.envs.collection import episode_spec, run_episode
from clam_jax.envs.metaworld import MetaWorldTask, check_task, expert_policy
from clam_jax.errors import ConfigError, DataError
from clam_jax.rollout.evaluation import evaluate


@pytest.fixture(scope="module")
def env():
    return MetaWorldTask("assembly-v3", max_steps=10, action_repeat=2)


def test_episode_layout_and_determinism(env):
    spec = episode_spec(seed=3, stream=0, index=5, behaviors=("expert_noise0.5",))
    first, second = run_episode(env, spec), run_episode(env, spec)
    assert first["observations"].shape == (11, 39) and first["actions"].shape == (11, 4)
    assert (first["actions"][-1] == 0).all() and (np.abs(first["actions"]) <= 1).all()
    for key in ("observations", "actions", "rewards"):
        np.testing.assert_array_equal(first[key], second[key])
    other = run_episode(env, episode_spec(seed=4, stream=0, index=5, behaviors=("expert_noise0.5",)))
    assert not np.array_equal(other["observations"][0], first["observations"][0])  # another task variation


def test_action_repeat_and_episode_length(env):
    env.reset(0)
    for _ in range(10):
        env.step(np.zeros(4))
    assert env._env.curr_path_length == 20  # 10 policy steps x action repeat 2
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(4))


def test_expert_solves_the_task_within_100_policy_steps():
    env = MetaWorldTask("assembly-v3", max_steps=100, action_repeat=2)
    episode = run_episode(env, episode_spec(seed=0, stream=2, index=0, behaviors=("expert",)))
    assert episode["success"]


def test_evaluation_reports_the_step_of_first_success():
    """The scripted expert through `evaluate`: every episode succeeds and says when; cut one step short of
    the earliest success, that episode fails and has no success step."""
    expert = expert_policy("assembly-v3")

    def act(observations):
        return np.stack([np.clip(expert(o), -1, 1) for o in observations])

    kwargs = dict(num_episodes=3, split="val", action_repeat=2, num_workers=1)
    full = evaluate(act, "assembly-v3", max_steps=100, **kwargs)
    assert full["successes"] == [True] * 3 and all(1 < n <= 100 for n in full["success_steps"])
    earliest = min(full["success_steps"])
    cut = evaluate(act, "assembly-v3", max_steps=earliest - 1, **kwargs)
    first = full["success_steps"].index(earliest)
    assert cut["successes"][first] is False and cut["success_steps"][first] is None
    assert [n is not None for n in cut["success_steps"]] == cut["successes"]


# The first frame of `REFERENCE_SPEC` at 64x64, as 8x8 blocks of mean grey level, rendered here on the
# software renderer (llvmpipe): the wall fills the top, the arm the left, the table the bottom.
REFERENCE_SPEC = dict(seed=0, stream=2, index=0, behaviors=("expert",))
REFERENCE_THUMBNAIL = np.array([
    [125, 125, 102, 117, 125, 125, 125, 125],
    [125, 125, 68, 77, 124, 125, 125, 125],
    [125, 116, 78, 69, 125, 125, 125, 125],
    [95, 80, 82, 101, 125, 125, 125, 125],
    [72, 82, 91, 95, 95, 103, 105, 107],
    [73, 106, 102, 96, 92, 90, 91, 96],
    [62, 120, 100, 95, 93, 96, 96, 92],
    [42, 115, 88, 125, 88, 86, 88, 146]])


def thumbnail(frame: np.ndarray) -> np.ndarray:
    return frame.astype(float).mean(-1).reshape(8, 8, 8, 8).mean((1, 3))


def test_rendered_frames_are_the_scene_right_side_up():
    env = MetaWorldTask("assembly-v3", max_steps=10, action_repeat=2)
    try:
        episode = run_episode(env, episode_spec(**REFERENCE_SPEC), image_size=64)
    finally:
        env.close()
    frames = episode["images"]
    assert frames.shape == (11, 64, 64, 3) and frames.dtype == np.uint8
    assert frames.std() > 20  # not blank
    assert np.abs(frames[-1].astype(float) - frames[0]).mean() > 1  # the arm moved
    first = thumbnail(frames[0])
    assert np.abs(first - REFERENCE_THUMBNAIL).mean() < 8
    assert np.abs(first[::-1] - REFERENCE_THUMBNAIL).mean() > 15  # upside down would be far off
    # The frames belong to the states: the same episode without rendering has the same states.
    plain = run_episode(MetaWorldTask("assembly-v3", max_steps=10, action_repeat=2), episode_spec(**REFERENCE_SPEC))
    np.testing.assert_array_equal(plain["observations"], episode["observations"])
    assert plain["images"] is None


def test_datasets_are_deterministic_whatever_the_worker_count(tiny_config, tmp_path):
    one, two = tiny_config(), tiny_config()
    one.data.num_workers, two.data.num_workers = 1, 2
    stats = collect_datasets(one, tmp_path / "a")
    collect_datasets(two, tmp_path / "b")
    for name in ("unlabeled", "labeled", "expert"):
        a, b = read_episodes(data_dir(tmp_path / "a") / name), read_episodes(data_dir(tmp_path / "b") / name)
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
    labeled = read_episodes(data_dir(tmp_path / "a") / "labeled")
    assert not labeled.success.any() and stats["labeled"]["success_rate"] == 0.0
    assert stats["labeled"]["episodes_attempted"] >= 4 and stats["expert"]["episodes_attempted"] == 4
    assert stats["unlabeled"]["num_episodes"] == 12 and len(stats["unlabeled"]["behaviors"]) == 6
    assert stats["expert"]["steps_per_episode"] == 20


def test_workdir_made_for_another_task_is_refused(tiny_config, tmp_path):
    config = tiny_config()
    config.data.unlabeled.episodes = config.data.labeled.episodes = config.data.expert.episodes = 1
    collect_datasets(config, tmp_path)
    config.task = "bin-picking-v3"
    with pytest.raises(DataError, match="another config.*new --workdir"):
        collect_datasets(config, tmp_path)


def test_unknown_task_and_behaviour_are_named():
    with pytest.raises(ConfigError, match="Unknown MetaWorld task 'assembly-v9'.*assembly-v3"):
        check_task("assembly-v9")
    with pytest.raises(ConfigError, match="Unknown behaviour 'expert_noisy'"):
        check_behavior("expert_noisy")


@pytest.mark.parametrize("behavior", ["expert_ou0.5", "expert_offset0.1", "random", "expert_noise1.0"])
def test_non_expert_behaviours_act_in_range_and_vary(env, behavior):
    episodes = [run_episode(env, episode_spec(seed=0, stream=1, index=i, behaviors=(behavior,))) for i in range(3)]
    actions = np.concatenate([e["actions"] for e in episodes])
    assert (np.abs(actions) <= 1).all() and actions.std() > 0.05


def test_correlated_noise_is_smoother_than_iid_noise():
    from clam_jax.envs.behaviors import make_behavior

    obs = np.zeros(39, np.float32)
    obs[:3] = [0.0, 0.6, 0.2]
    steps = {}
    for name in ("expert_ou0.3", "expert_noise0.3"):
        act = make_behavior(name, "reach-v3", np.random.default_rng(0))
        actions = np.stack([act(obs) for _ in range(200)])
        steps[name] = np.abs(np.diff(actions, axis=0)).mean()
    assert steps["expert_ou0.3"] < 0.5 * steps["expert_noise0.3"]
