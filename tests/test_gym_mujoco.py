"""Gymnasium's MuJoCo locomotion tasks (the paper's Hopper and HalfCheetah) behind the environment interface."""
import gymnasium
import numpy as np
import pytest

from clam_jax.envs.gym_mujoco import GymMuJoCoTask
from clam_jax.envs.tasks import LOCOMOTION_SUITES, suite_of, task_dims
from clam_jax.errors import ConfigError


@pytest.mark.parametrize("task,obs_dim,action_dim", [("Hopper-v5", 11, 3), ("HalfCheetah-v5", 17, 6)])
def test_the_papers_robots_have_its_state_and_action_sizes_and_500_policy_steps(task, obs_dim, action_dim):
    env = GymMuJoCoTask(task)
    assert (env.obs_dim, env.action_dim, env.max_steps) == (obs_dim, action_dim, 500)
    assert task_dims(task) == (obs_dim, action_dim) and suite_of(task) == "gym"
    assert "gym" in LOCOMOTION_SUITES  # its data comes from the SAC agent, like dm_control's
    first = env.reset(3)
    assert first.shape == (obs_dim,) and first.dtype == np.float32
    np.testing.assert_array_equal(env.reset(3), first)
    assert not np.array_equal(env.reset(4), first)


def test_a_fallen_hopper_stays_in_its_episode_without_the_healthy_reward():
    """The paper's fixed episode length with no termination (its Appendix E)."""
    env = GymMuJoCoTask("Hopper-v5")
    env.reset(0)
    steps = [env.step(np.array([1.0, -1.0, 1.0])) for _ in range(env.max_steps)]
    rewards = [reward for _, reward, _ in steps]
    assert steps[-1][0][0] < 0.7  # the torso's height: below Hopper's healthy range
    assert rewards[0] > 0.9 and max(rewards[-100:]) < 0.5  # healthy reward 1 per simulator step while upright
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(3))


def test_one_policy_step_repeats_the_action_and_sums_the_rewards():
    env = GymMuJoCoTask("Hopper-v5", action_repeat=2)
    raw = gymnasium.make("Hopper-v5", terminate_when_unhealthy=False)
    np.testing.assert_allclose(env.reset(7), raw.reset(seed=7)[0], rtol=1e-6)
    action = np.array([0.4, -0.3, 0.9])
    obs, reward, success = env.step(action * 3)
    steps = [raw.step(np.clip(action * 3, -1, 1)) for _ in range(2)]
    np.testing.assert_allclose(reward, sum(s[1] for s in steps), rtol=1e-6)
    np.testing.assert_allclose(obs, steps[-1][0], rtol=1e-6)
    assert success is False


def test_unknown_tasks_long_episodes_and_other_action_bounds_are_refused():
    with pytest.raises(ConfigError, match="Hopper-v5"):
        GymMuJoCoTask("Hopper-v9")
    with pytest.raises(ConfigError, match="1..500"):
        GymMuJoCoTask("Hopper-v5", max_steps=600)
    with pytest.raises(ConfigError, match="not \\[-1, 1\\]"):
        GymMuJoCoTask("Humanoid-v5")
