"""Parallel, deterministic episode collection with behaviour policies.

Episode i of a dataset is fully determined by (seed, dataset id, i): its task
variation, its behaviour and its noise. Workers keep one environment each for
the whole run (making one costs ~1 s, resetting it is cheap), and results are
returned in index order, so the output does not depend on the number of workers.
"""
import multiprocessing
import os
import warnings
from typing import Iterator, NamedTuple

import numpy as np

from clam_jax.envs.behaviors import make_behavior
from clam_jax.envs.metaworld import MetaWorldTask


class EpisodeSpec(NamedTuple):
    index: int
    behavior: str
    variation_seed: int
    noise_seed: int


def episode_spec(seed: int, stream: int, index: int, behaviors: tuple[str, ...]) -> EpisodeSpec:
    variation_seed, noise_seed = np.random.SeedSequence([seed, stream, index]).generate_state(2)
    return EpisodeSpec(index, behaviors[index % len(behaviors)], int(variation_seed), int(noise_seed))


def run_episode(env: MetaWorldTask, spec: EpisodeSpec, image_size: int = 0) -> dict:
    """Rolls out one episode; arrays follow the RLDS layout of `clam_jax.data.episodes`. With `image_size` > 0
    every observation is also rendered as an [image_size, image_size, 3] uint8 frame ("images")."""
    policy = make_behavior(spec.behavior, env.task, np.random.default_rng(spec.noise_seed))
    n = env.max_steps
    observations = np.zeros((n + 1, env.obs_dim), np.float32)
    actions = np.zeros((n + 1, env.action_dim), np.float32)
    rewards = np.zeros(n + 1, np.float32)
    success = False
    images = np.zeros((n + 1, image_size, image_size, 3), np.uint8) if image_size else None
    observations[0] = env.reset(spec.variation_seed)
    for t in range(n + 1):
        if image_size:
            images[t] = env.render(image_size, image_size)
        if t == n:
            break
        actions[t] = policy(observations[t])
        observations[t + 1], rewards[t], step_success = env.step(actions[t])
        success |= step_success
    return dict(observations=observations, actions=actions, rewards=rewards, success=success,
                behavior=spec.behavior, images=images)


_worker_env: MetaWorldTask | None = None
_worker_image_size = 0


def _init_worker(task: str, max_steps: int, action_repeat: int, image_size: int) -> None:
    global _worker_env, _worker_image_size
    warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")
    _worker_env = MetaWorldTask(task, max_steps=max_steps, action_repeat=action_repeat)
    _worker_image_size = image_size


def _run_in_worker(spec: EpisodeSpec) -> dict:
    return run_episode(_worker_env, spec, _worker_image_size)


def default_num_workers() -> int:
    return len(os.sched_getaffinity(0))


class EpisodeCollector:
    """A pool of worker processes, each with one environment of `task` (rendering frames of `image_size`
    pixels beside the states when it is > 0)."""

    def __init__(self, task: str, *, max_steps: int, action_repeat: int, num_workers: int = 0,
                 image_size: int = 0):
        self.num_workers = num_workers or default_num_workers()
        self._pool = multiprocessing.get_context("spawn").Pool(
            self.num_workers, initializer=_init_worker, initargs=(task, max_steps, action_repeat, image_size))

    def run(self, specs: list[EpisodeSpec]) -> Iterator[dict]:
        """Yields the episodes of `specs` in order."""
        yield from self._pool.imap(_run_in_worker, specs, chunksize=4)

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
