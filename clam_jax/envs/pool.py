"""N environments stepped together by worker processes, for batched policy evaluation.

Each worker owns a slice of the N environments; the caller sends one batch of
actions and gets back one batch of observations, so the policy runs as a single
jitted call on the whole batch. Messages travel over local pipes.
"""
import multiprocessing
import warnings

import numpy as np

from clam_jax.envs.tasks import make_task


def _worker(conn, task: str, count: int, max_steps: int, action_repeat: int, options: dict) -> None:
    warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")
    envs = [make_task(task, max_steps=max_steps, action_repeat=action_repeat, **options) for _ in range(count)]
    conn.send("ready")
    while True:
        command, payload = conn.recv()
        if command == "reset":
            conn.send(np.stack([env.reset(int(seed)) for env, seed in zip(envs, payload)]))
        elif command == "step":
            results = [env.step(action) for env, action in zip(envs, payload)]
            conn.send(tuple(np.array(x) for x in zip(*results)))
        elif command == "render":
            conn.send([envs[i].render(*payload[1]) for i in payload[0]])
        elif command == "close":
            for env in envs:
                env.close()
            conn.close()
            return


class EnvPool:
    """`num_envs` environments of one task (`clam_jax.envs.tasks`, with the suite's `options`) in `num_workers`
    processes."""

    def __init__(self, task: str, num_envs: int, *, max_steps: int, action_repeat: int, num_workers: int,
                 options: dict | None = None):
        num_workers = max(1, min(num_workers, num_envs))
        sizes = [len(s) for s in np.array_split(np.arange(num_envs), num_workers)]
        ctx = multiprocessing.get_context("spawn")
        self._conns, self._procs, self._sizes = [], [], sizes
        for size in sizes:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, task, size, max_steps, action_repeat, options or {}),
                               daemon=True)
            proc.start()
            self._conns.append(parent)
            self._procs.append(proc)
        for conn in self._conns:
            conn.recv()

    def _split(self, batch):
        return np.split(np.asarray(batch), np.cumsum(self._sizes)[:-1])

    def reset(self, variation_seeds) -> np.ndarray:
        for conn, part in zip(self._conns, self._split(variation_seeds)):
            conn.send(("reset", part))
        return np.concatenate([conn.recv() for conn in self._conns])

    def step(self, actions: np.ndarray):
        """Returns (observations [N, D], rewards [N], successes [N])."""
        for conn, part in zip(self._conns, self._split(actions)):
            conn.send(("step", part))
        parts = [conn.recv() for conn in self._conns]
        return tuple(np.concatenate(x) for x in zip(*parts))

    def render(self, indices, size=(128, 128)) -> list[np.ndarray]:
        """Frames of the environments at global `indices`."""
        offsets = np.cumsum([0] + self._sizes)
        frames = []
        for w, conn in enumerate(self._conns):
            local = [i - offsets[w] for i in indices if offsets[w] <= i < offsets[w + 1]]
            if local:
                conn.send(("render", (local, size)))
                frames.extend(conn.recv())
        return frames

    def close(self) -> None:
        for conn in self._conns:
            conn.send(("close", None))
        for proc in self._procs:
            proc.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
