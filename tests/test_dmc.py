"""dm_control tasks behind the environment interface, the SAC data agent, and its resumable online loop."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dm_control import suite

from clam_jax.envs.agent import AgentSchedule, evaluate_agent, train_agent
from clam_jax.envs.dmc import DMControlTask
from clam_jax.envs.locomotion import locomotion_datasets, medium_point
from clam_jax.envs.sac import SAC, squashed_sample
from clam_jax.errors import ConfigError
from clam_jax.train import normalized_return
from clam_jax.training.checkpoints import TrainStateCheckpoints


@pytest.mark.parametrize("task,obs_dim,action_dim", [("hopper-hop", 15, 4), ("cheetah-run", 17, 6)])
def test_locomotion_tasks_flatten_observations_and_last_500_policy_steps(task, obs_dim, action_dim):
    env = DMControlTask(task)
    assert (env.obs_dim, env.action_dim, env.max_steps) == (obs_dim, action_dim, 500)
    first = env.reset(3)
    assert first.shape == (obs_dim,) and first.dtype == np.float32
    np.testing.assert_array_equal(env.reset(3), first)
    assert not np.array_equal(env.reset(4), first)
    for _ in range(env.max_steps):
        obs, reward, success = env.step(np.ones(action_dim))
    assert obs.shape == (obs_dim,) and np.isfinite(reward) and success is False
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(action_dim))


def test_one_policy_step_repeats_the_action_and_sums_the_rewards():
    env = DMControlTask("cheetah-run", action_repeat=2)
    raw = suite.load("cheetah", "run", task_kwargs={"random": np.random.RandomState(7)})
    np.testing.assert_allclose(env.reset(7), np.concatenate([v.ravel() for v in raw.reset().observation.values()]))
    action = np.linspace(-1, 1, 6)
    obs, reward, _ = env.step(action * 3)
    timesteps = [raw.step(np.clip(action * 3, -1, 1)) for _ in range(2)]
    np.testing.assert_allclose(reward, sum(t.reward for t in timesteps), rtol=1e-6)
    np.testing.assert_allclose(obs, np.concatenate([v.ravel() for v in timesteps[-1].observation.values()]),
                               rtol=1e-6)


def test_unknown_task_and_too_long_episodes_are_refused_with_the_choices():
    with pytest.raises(ConfigError, match="hopper-hop"):
        DMControlTask("hopper-jump")
    with pytest.raises(ConfigError, match="1..500"):
        DMControlTask("hopper-hop", max_steps=600)


def test_squashed_sample_log_density_matches_the_change_of_variables():
    mean, log_std = jnp.array([[0.3, -1.0]]), jnp.array([[-0.5, 0.2]])
    action, log_prob = squashed_sample(mean, log_std, jax.random.key(0))
    u = jnp.arctanh(action)
    std = jnp.exp(log_std)
    expected = jnp.sum(-0.5 * ((u - mean) / std) ** 2 - jnp.log(std * jnp.sqrt(2 * jnp.pi))
                       - jnp.log(1 - action ** 2), axis=-1)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-4)
    assert jnp.all(jnp.abs(action) < 1)


def test_sac_balances_a_cartpole_well_above_random_actions():
    env = DMControlTask("cartpole-balance", max_steps=100)
    sac = SAC(env.obs_dim, env.action_dim, hidden=(128, 128))
    run = train_agent(env, sac, AgentSchedule(episodes=30, random_steps=1000, batch_size=128), seed=0)
    random_returns = np.asarray(run.replay.rewards[:10]).sum(-1)  # the first 1000 steps act at random
    learned = evaluate_agent(env, sac, run.agent.actor_params, episodes=5, first_seed=10_000)
    assert int(run.replay.count) == 30 and int(run.agent.step) == 2100
    assert learned.mean() > 1.3 * random_returns.mean(), (learned, random_returns)


class Interrupted(Exception):
    pass


class StopsAtEpisode:
    """The real task, but a reset of episode `stop` raises: an interruption in the middle of a run."""

    def __init__(self, env, stop: int):
        self._env, self._stop, self._resets = env, stop, 0

    def __getattr__(self, name):
        return getattr(self._env, name)

    def reset(self, seed):
        if self._resets == self._stop:
            raise Interrupted
        self._resets += 1
        return self._env.reset(seed)


def test_an_interrupted_run_resumes_from_its_checkpoint_and_collects_the_same_episodes(tmp_path):
    env = DMControlTask("cheetah-run", max_steps=20)
    sac = SAC(env.obs_dim, env.action_dim, hidden=(32, 32))
    schedule = AgentSchedule(episodes=5, random_steps=40, batch_size=16)
    straight = train_agent(env, sac, schedule, seed=1)
    checkpoints = TrainStateCheckpoints(tmp_path / "sac")
    with pytest.raises(Interrupted):
        train_agent(StopsAtEpisode(env, 3), sac, schedule, seed=1, checkpoints=checkpoints, checkpoint_every=2)
    assert checkpoints.latest_step() == 2
    resumed = train_agent(env, sac, schedule, seed=1, checkpoints=checkpoints, checkpoint_every=2)
    for a, b in zip(jax.tree.leaves((straight.replay, straight.agent.actor_params)),
                    jax.tree.leaves((resumed.replay, resumed.agent.actor_params)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert np.asarray(resumed.replay.agent_steps).tolist() == [0, 0, 20, 40, 60]


def test_medium_point_is_the_first_episode_at_the_fraction_of_the_expert_return():
    returns = np.array([1.0, 2.0, 5.0, 8.0, 3.0])
    assert medium_point(returns, expert_return=10.0, fraction=0.5) == 2
    assert medium_point(returns, expert_return=100.0, fraction=0.5) == 5
    assert medium_point(returns, expert_return=2.0, fraction=0.5, start=3) == 3  # random episodes never count


def test_buffer_episodes_replay_to_their_observations_and_make_the_three_datasets():
    env = DMControlTask("cheetah-run", max_steps=15)
    sac = SAC(env.obs_dim, env.action_dim, hidden=(32, 32))
    run = train_agent(env, sac, AgentSchedule(episodes=6, random_steps=30, batch_size=16), seed=2)
    datasets, scores, cut = locomotion_datasets(run, env, sac, seed=2, random_steps=30, medium_fraction=100.0,
                                                labeled_episodes=2, expert_episodes=3, reference_episodes=2)
    unlabeled, labeled, expert = datasets["unlabeled"], datasets["labeled"], datasets["expert"]
    assert cut == {"medium_point": 6, "buffer_episodes": 6}
    assert (unlabeled.num_episodes, labeled.num_episodes, expert.num_episodes) == (6, 2, 3)
    assert unlabeled.behavior.tolist() == ["random"] * 2 + ["sac_learning"] * 4
    assert expert.behavior.tolist() == ["sac_expert"] * 3
    # RLDS alignment: action[t] taken at observation[t] gives observation[t + 1] and reward[t]; the last is padding.
    episode = 4
    np.testing.assert_allclose(env.reset(2 * 1_000_003 + episode), unlabeled.observations[episode, 0])
    for t in range(15):
        obs, reward, _ = env.step(unlabeled.actions[episode, t])
        np.testing.assert_allclose(obs, unlabeled.observations[episode, t + 1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(reward, unlabeled.rewards[episode, t], rtol=1e-5)
    assert not unlabeled.actions[:, -1].any() and not unlabeled.rewards[:, -1].any()
    np.testing.assert_array_equal(labeled.observations, unlabeled.observations[:2])
    assert scores["expert"] == pytest.approx(expert.rewards.sum(1).mean())
    with pytest.raises(ConfigError, match="config.agent.random_steps"):  # 2 random episodes, then medium at once
        locomotion_datasets(run, env, sac, seed=2, random_steps=30, medium_fraction=0.0, labeled_episodes=3,
                            expert_episodes=1, reference_episodes=1)


def test_normalized_return_is_zero_at_random_and_one_at_the_expert():
    reference = {"random": 10.0, "expert": 110.0}
    assert [normalized_return(s, reference) for s in (10.0, 110.0, 60.0)] == [0.0, 1.0, 0.5]
