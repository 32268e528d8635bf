"""The locomotion data regime (paper Table 1, the analogue of D4RL's medium-replay data) from one SAC run.

- D_unlabeled: the agent's replay buffer, in collection order, up to the first
  episode of the learning agent whose return reaches `medium_fraction` of the
  final agent's return (the whole buffer if none does): random, then learning,
  behaviour.
- D_labeled: the buffer's first episodes (uniform random actions and the early
  agent: low return).
- D_unlabeled_expert: rollouts of the final agent's mean action.
The reference scores of the normalized return, (score - random) / (expert -
random), are measured here too: uniform random actions, and the final agent.
"""
import numpy as np

from clam_jax.data.episodes import Episodes
from clam_jax.envs.agent import AgentRun, mean_actions, run_episode
from clam_jax.errors import ConfigError

# Seed streams of the rollouts, disjoint from the agent's episodes (seed * 1_000_003 + i) and from evaluation.
EXPERT_SEEDS, RANDOM_SEEDS = 0xE4, 0x4A


def rollout_seeds(stream: int, seed: int, count: int) -> list[int]:
    return [int(np.random.SeedSequence([stream, seed, i]).generate_state(1)[0]) for i in range(count)]


def as_episodes(observations, actions, rewards, behavior) -> Episodes:
    """Dense episodes ([N, T + 1, D] observations, [N, T, A] actions, [N, T] rewards) in the RLDS layout:
    the last step's action and reward are padding."""
    n = observations.shape[0]
    pad = lambda x: np.concatenate([x, np.zeros_like(x[:, :1])], axis=1)
    return Episodes(observations=np.asarray(observations, np.float32), actions=pad(np.asarray(actions, np.float32)),
                    rewards=pad(np.asarray(rewards, np.float32)), success=np.zeros(n, bool),
                    behavior=np.asarray(behavior if isinstance(behavior, (list, np.ndarray)) else [behavior] * n))


def rollouts(env, policy, seeds: list[int]) -> Episodes:
    """One episode per seed (`clam_jax.envs.agent.run_episode`: uniform random actions if `policy` is None)."""
    observations, actions, rewards = zip(*(run_episode(env, seed, policy) for seed in seeds))
    return as_episodes(np.stack(observations), np.stack(actions), np.stack(rewards),
                       "random" if policy is None else "sac_expert")


def medium_point(returns: np.ndarray, expert_return: float, fraction: float, start: int = 0) -> int:
    """Episodes before the first one from `start` on (the agent's, after the random ones) whose return reaches
    `fraction` of the expert's; all of them if none does."""
    reached = np.flatnonzero(returns[start:] >= fraction * expert_return)
    return start + int(reached[0]) if reached.size else len(returns)


def locomotion_datasets(run: AgentRun, env, sac, *, seed: int, random_steps: int, medium_fraction: float,
                        labeled_episodes: int, expert_episodes: int, reference_episodes: int):
    """(datasets {"unlabeled", "labeled", "expert"} of Episodes, reference scores {"random", "expert"}, and
    where the buffer was cut: {"medium_point", "buffer_episodes"})."""
    expert = rollouts(env, mean_actions(sac, run.agent.actor_params), rollout_seeds(EXPERT_SEEDS, seed,
                                                                                    expert_episodes))
    random = rollouts(env, None, rollout_seeds(RANDOM_SEEDS, seed, reference_episodes))
    scores = {"random": float(random.rewards.sum(1).mean()), "expert": float(expert.rewards.sum(1).mean())}
    count = int(run.replay.count)
    observations, actions, rewards = (np.asarray(x)[:count] for x in (run.replay.observations, run.replay.actions,
                                                                       run.replay.rewards))
    random_episodes = np.arange(count) * env.max_steps < random_steps
    buffer = as_episodes(observations, actions, rewards, np.where(random_episodes, "random", "sac_learning"))
    cut = medium_point(rewards.sum(1), scores["expert"], medium_fraction, start=int(random_episodes.sum()))
    if labeled_episodes > cut:
        raise ConfigError(f"D_labeled takes the buffer's first {labeled_episodes} episodes, but the agent reached "
                          f"medium return after {cut}: raise config.agent.random_steps or lower "
                          "config.data.labeled.episodes.")
    return ({"unlabeled": buffer.head(cut), "labeled": buffer.head(labeled_episodes), "expert": expert}, scores,
            {"medium_point": cut, "buffer_episodes": count})
