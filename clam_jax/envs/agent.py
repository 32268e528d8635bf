"""Online SAC training whose replay buffer is kept whole, episode by episode, as the data of a locomotion task.

The replay lives on the device as dense episode arrays ([E, T + 1, D]
observations, [E, T, A] actions, [E, T] rewards; every episode of a task has the
same T policy steps), so one jitted dispatch per collected episode samples
`updates_per_step * T` batches there and scans the SAC update over them. The
first `random_steps` policy steps act uniformly at random. Every episode keeps
the agent update count at which it was collected, and the run checkpoints the
agent, the replay and the episode counter together, so an interrupted run
resumes at the episode it stopped at and gives the same data as one that was not.
"""
import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from clam_jax.envs.sac import SAC, SACState


@flax.struct.dataclass
class Replay:
    observations: jax.Array  # [E, T + 1, obs_dim]
    actions: jax.Array  # [E, T, action_dim]
    rewards: jax.Array  # [E, T]
    agent_steps: jax.Array  # [E] SAC updates done before the episode was collected
    count: jax.Array  # episodes stored


@flax.struct.dataclass
class AgentRun:
    """What a checkpoint holds: the agent, every episode so far, and the RNG of the acting."""

    agent: SACState
    replay: Replay
    rng: jax.Array


@dataclasses.dataclass(frozen=True)
class AgentSchedule:
    episodes: int  # episodes to collect in all
    random_steps: int = 5000  # policy steps of uniform random actions before the agent acts and learns
    updates_per_step: int = 1
    batch_size: int = 256


def empty_replay(episodes: int, steps: int, obs_dim: int, action_dim: int) -> Replay:
    return Replay(observations=jnp.zeros((episodes, steps + 1, obs_dim)), actions=jnp.zeros((episodes, steps,
                  action_dim)), rewards=jnp.zeros((episodes, steps)), agent_steps=jnp.zeros(episodes, jnp.int32),
                  count=jnp.zeros((), jnp.int32))


@functools.partial(jax.jit, donate_argnums=0)
def add_episode(replay: Replay, observations, actions, rewards, agent_step) -> Replay:
    i = replay.count
    return Replay(observations=replay.observations.at[i].set(observations),
                  actions=replay.actions.at[i].set(actions), rewards=replay.rewards.at[i].set(rewards),
                  agent_steps=replay.agent_steps.at[i].set(agent_step), count=i + 1)


def sample_transitions(key: jax.Array, replay: Replay, batch_size: int) -> dict:
    """Uniform transitions of the stored episodes (suite episodes end by time limit: discount stays 1)."""
    k_episode, k_t = jax.random.split(key)
    episode = jax.random.randint(k_episode, (batch_size,), 0, replay.count)
    t = jax.random.randint(k_t, (batch_size,), 0, replay.actions.shape[1])
    return {"obs": replay.observations[episode, t], "action": replay.actions[episode, t],
            "reward": replay.rewards[episode, t], "next_obs": replay.observations[episode, t + 1],
            "discount": jnp.ones(batch_size)}


def make_update_chunk(sac: SAC, batch_size: int, length: int):
    """jit(agent, replay) -> (agent, mean metrics): `length` SAC updates on batches sampled from the replay."""

    def chunk(agent: SACState, replay: Replay):
        def body(agent, _):
            batch = sample_transitions(jax.random.fold_in(jax.random.fold_in(agent.rng, agent.step), 1), replay,
                                       batch_size)
            return sac.update(agent, batch)

        agent, metrics = jax.lax.scan(body, agent, None, length=length)
        return agent, jax.tree.map(jnp.mean, metrics)

    return jax.jit(chunk, donate_argnums=0)


def run_episode(env, seed: int, policy=None):
    """One episode from the initial state of `seed` with `policy(obs [D], t) -> action [A]`, or uniform random
    actions drawn from `seed` if it is None; returns (observations [T + 1, D], actions [T, A], rewards [T])."""
    rng = np.random.default_rng(seed)
    observations, actions, rewards = [env.reset(seed)], [], []
    for t in range(env.max_steps):
        if policy is None:
            action = rng.uniform(-1.0, 1.0, env.action_dim).astype(np.float32)
        else:
            action = policy(observations[-1], t)
        obs, reward, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
    return np.stack(observations), np.stack(actions), np.asarray(rewards, np.float32)


def train_agent(env, sac: SAC, schedule: AgentSchedule, *, seed: int, checkpoints=None,
                checkpoint_every: int = 10, desc: str = "sac") -> AgentRun:
    """Collects `schedule.episodes` episodes while training SAC on all of them; returns the final run.

    Episode i starts from the task's initial state of seed `seed * 1_000_003 + i`.
    With `checkpoints` (a `TrainStateCheckpoints`), the run is saved every
    `checkpoint_every` episodes and at the end, and resumes from the latest save.
    """
    steps = env.max_steps
    run = AgentRun(agent=sac.init(jax.random.key(seed)), rng=jax.random.key(seed + 1),
                   replay=empty_replay(schedule.episodes, steps, sac.obs_dim, sac.action_dim))
    if checkpoints is not None and checkpoints.latest_step() is not None:
        run = checkpoints.restore(run)
    update_chunk = make_update_chunk(sac, schedule.batch_size, schedule.updates_per_step * steps)
    act = jax.jit(sac.act)

    def sampled_actions(actor_params, key):
        return lambda obs, t: np.asarray(act(actor_params, obs[None], jax.random.fold_in(key, t))[0])

    start = int(run.replay.count)
    bar = tqdm.tqdm(range(start, schedule.episodes), initial=start, total=schedule.episodes, desc=desc,
                    unit="episode", disable=jax.process_index() != 0)
    for i in bar:
        random = i * steps < schedule.random_steps
        policy = None if random else sampled_actions(run.agent.actor_params, jax.random.fold_in(run.rng, i))
        observations, actions, rewards = run_episode(env, seed * 1_000_003 + i, policy)
        replay = add_episode(run.replay, observations, actions, rewards, run.agent.step)
        agent, metrics = run.agent, {}
        if (i + 1) * steps >= schedule.random_steps:
            agent, metrics = update_chunk(agent, replay)
        run = run.replace(agent=agent, replay=replay)
        bar.set_postfix(episode_return=f"{rewards.sum():.1f}",
                        **{k: f"{float(v):.3g}" for k, v in metrics.items() if k in ("q", "alpha")})
        if checkpoints is not None and ((i + 1) % checkpoint_every == 0 or i + 1 == schedule.episodes):
            checkpoints.save(i + 1, run)
    return run


def mean_actions(sac: SAC, actor_params):
    """The deterministic policy (obs, t) -> tanh of the actor's mean, for `run_episode`."""
    act = jax.jit(functools.partial(sac.act, deterministic=True))
    return lambda obs, t: np.asarray(act(actor_params, obs[None], jax.random.key(0))[0])


def evaluate_agent(env, sac: SAC, actor_params, *, episodes: int, first_seed: int) -> np.ndarray:
    """Returns of the deterministic (mean) policy on episodes seeded first_seed, first_seed + 1, ..."""
    policy = mean_actions(sac, actor_params)
    return np.asarray([run_episode(env, first_seed + i, policy)[2].sum() for i in range(episodes)])
