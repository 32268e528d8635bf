"""Orbax checkpoints of a whole train state (params, optimizer states, step, rng)."""
from pathlib import Path

import jax
import orbax.checkpoint as ocp


class TrainStateCheckpoints:
    """Keeps the latest `max_to_keep` train states of one stage under `directory`."""

    def __init__(self, directory, max_to_keep: int = 2):
        self._manager = ocp.CheckpointManager(
            Path(directory).absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state) -> None:
        self._manager.save(step, args=ocp.args.StandardSave(state))
        self._manager.wait_until_finished()

    def restore(self, like, step: int | None = None):
        """Restores the checkpoint at `step` (default: latest) into the structure of `like`."""
        step = self.latest_step() if step is None else step
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self._manager.close()
