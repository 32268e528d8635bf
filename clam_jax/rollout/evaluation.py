"""Success rate of a policy over a fixed set of task variations, all episodes stepped together."""
import numpy as np

from clam_jax.data.observations import model_observations
from clam_jax.envs.collection import default_num_workers
from clam_jax.envs.pool import EnvPool
from clam_jax.envs.tasks import require_simulator
from clam_jax.rollout.chunking import start_episodes

# Evaluation variations come from their own seed streams, disjoint from the data's
# and independent of the training seed: "val" is for development, "test" for reporting.
_SPLIT_STREAMS = {"val": 0x7A1, "test": 0x7E57}


def evaluation_seeds(split: str, num_episodes: int) -> list[int]:
    return [int(np.random.SeedSequence([_SPLIT_STREAMS[split], i]).generate_state(1)[0])
            for i in range(num_episodes)]


def evaluate(act, task: str, *, num_episodes: int, split: str, max_steps: int, action_repeat: int,
             num_workers: int = 0, videos: int = 0, image_size: int = 0, proprio_dims: int = 0,
             env_options: dict | None = None) -> dict:
    """Runs `act(observations [N, D]) -> actions [N, A]` for one episode in each variation (reset first if it
    has memory, `clam_jax.rollout.chunking.start_episodes`); with
    `image_size` > 0 the observations are the corner camera's frames [N, image_size, image_size, 3] instead,
    and with `proprio_dims` > 0 also the states' first entries (`clam_jax.data.observations`). `env_options`
    are the suite's (`clam_jax.envs.tasks.task_options`).

    Returns per-episode successes, returns and success steps (the policy step, from 1, at which the episode
    first succeeded; None if it never did: how close to the time limit successes come), the success rate, and
    `frames` ([videos, T + 1, H, W, 3] uint8) when videos > 0.
    """
    require_simulator(task)
    with EnvPool(task, num_episodes, max_steps=max_steps, action_repeat=action_repeat,
                 num_workers=num_workers or default_num_workers(), options=env_options) as pool:

        def observe(states):
            frames = np.stack(pool.render(range(num_episodes), (image_size, image_size))) if image_size else None
            return model_observations(states, frames, proprio_dims)

        obs = observe(pool.reset(evaluation_seeds(split, num_episodes)))
        start_episodes(act)
        success = np.zeros(num_episodes, bool)
        success_steps = np.zeros(num_episodes, int)
        returns = np.zeros(num_episodes)
        frames = [pool.render(range(videos))] if videos else []
        for step in range(1, max_steps + 1):
            states, reward, step_success = pool.step(np.asarray(act(obs)))
            obs = observe(states)
            success_steps[step_success & ~success] = step
            success |= step_success
            returns += reward
            if videos:
                frames.append(pool.render(range(videos)))
    result = {"success_rate": float(success.mean()), "num_episodes": num_episodes,
              "successes": success.tolist(), "returns": returns.tolist(),
              "success_steps": [int(n) if n else None for n in success_steps], "split": split}
    if videos:
        result["frames"] = np.stack([np.stack(f) for f in frames], axis=1)
    return result
