"""Orbax checkpoints of a whole train state (params, optimizer states, step, rng)."""
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from clam_jax.errors import DataError


def _shape(leaf) -> tuple:
    """A leaf's shape as stored: a PRNG key array is stored as its key data."""
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
        leaf = jax.eval_shape(jax.random.key_data, leaf)
    return tuple(np.shape(leaf))


def _layout(tree, shape=_shape) -> dict:
    """{"params/...": shape} of a train state, or of a checkpoint's metadata tree (`shape=` its leaves')."""
    return {jax.tree_util.keystr(path, simple=True, separator="/"): shape(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


class TrainStateCheckpoints:
    """Keeps the latest `max_to_keep` train states of one stage under `directory`."""

    def __init__(self, directory, max_to_keep: int = 2):
        self._manager = ocp.CheckpointManager(
            Path(directory).absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
            item_handlers=ocp.StandardCheckpointHandler(),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state) -> None:
        self._manager.save(step, args=ocp.args.StandardSave(state))
        self._manager.wait_until_finished()

    def restore(self, like, step: int | None = None):
        """Restores the checkpoint at `step` (default: latest) into the structure of `like`; a checkpoint of
        another layout (other model or optimizer settings, an earlier version) is a `DataError`."""
        step = self.latest_step() if step is None else step
        metadata = self._manager.item_metadata(step)
        metadata = getattr(metadata, "tree", metadata)  # None where orbax cannot read it: restore says why
        stored = None if metadata is None else _layout(metadata, lambda m: tuple(getattr(m, "shape", ())))
        expected = _layout(like)
        if stored is not None and stored != expected:
            paths = sorted(stored.keys() | expected.keys(), key=lambda p: (not p.startswith("params/"), p))
            path = next(p for p in paths if stored.get(p) != expected.get(p))
            raise DataError(
                f"The checkpoint of step {step} in {self._manager.directory} does not fit this run's train state "
                f"({path}: {stored.get(path, 'absent')} in the checkpoint, {expected.get(path, 'absent')} "
                "here): it was written for other model or optimizer settings, or by an earlier version of clam_jax "
                "(transformer LAMs now stack their layers' parameters). Resume it with the settings and version that "
                "wrote it, or train in a new workdir.")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self._manager.close()
