"""Several seeds in one program: a leading seed axis on train states and data.

Small state models leave an accelerator idle, so S runs that differ only in
their seed (their own datasets, initialization and sampling) train as one
`vmap`ped program (`clam_jax.training.loop.make_multi_step(..., seeds=S)`). Each
run keeps its own workdir: `SeedCheckpoints` saves and restores each seed's
slice of the state with that run's checkpoints, and `SeedMetricWriters` writes
each seed's metrics to that run's log, so a run trained in a group is
indistinguishable on disk from one trained alone.
"""
import jax
import jax.numpy as jnp
import numpy as np

from clam_jax.errors import DataError


def stack(trees: list):
    """Per-seed pytrees of equal shapes -> one pytree with a leading seed axis."""
    shapes = [jax.tree.map(np.shape, tree) for tree in trees]
    if any(s != shapes[0] for s in shapes[1:]):
        raise DataError("Runs trained together need data of the same shapes in every seed; their shapes differ "
                        f"({shapes[0]} vs {next(s for s in shapes if s != shapes[0])}): train them one by one.")
    return jax.tree.map(lambda *xs: np.stack(xs), *trees)


def seed_slice(tree, index: int):
    """The `index`-th seed's pytree."""
    return jax.tree.map(lambda x: x[index], tree)


class SeedCheckpoints:
    """The checkpoints of S runs (one `TrainStateCheckpoints` each) for a state with a leading seed axis."""

    def __init__(self, checkpoints: list):
        self.checkpoints = checkpoints

    def latest_step(self) -> int | None:
        """The step every run has a checkpoint of (None unless all have one)."""
        steps = [c.latest_step() for c in self.checkpoints]
        return None if None in steps else min(steps)

    def save(self, step: int, state) -> None:
        for i, checkpoints in enumerate(self.checkpoints):
            checkpoints.save(step, seed_slice(state, i))

    def restore(self, like, step: int | None = None):
        step = self.latest_step() if step is None else step
        restored = [c.restore(seed_slice(like, i), step) for i, c in enumerate(self.checkpoints)]
        return jax.tree.map(lambda *xs: jnp.stack(xs), *restored)

    def close(self) -> None:
        for checkpoints in self.checkpoints:
            checkpoints.close()


class SeedMetricWriters:
    """Writes seed i's entry of every [S] metric (and every scalar one) to the i-th run's writer."""

    def __init__(self, writers: list):
        self.writers = writers

    def write(self, step: int, metrics: dict) -> None:
        for i, writer in enumerate(self.writers):
            writer.write(step, {k: v[i] if np.ndim(v) else v for k, v in metrics.items()})

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
