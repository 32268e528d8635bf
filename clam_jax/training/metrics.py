"""Metrics to JSON lines and TensorBoard; only process 0 writes."""
import json
from pathlib import Path

import jax
import numpy as np


class MetricWriter:
    def __init__(self, workdir, stage: str):
        self.stage = stage
        self._active = jax.process_index() == 0
        if self._active:
            from tensorboardX import SummaryWriter

            Path(workdir).mkdir(parents=True, exist_ok=True)
            self._jsonl = open(Path(workdir) / "metrics.jsonl", "a")
            self._tb = SummaryWriter(str(Path(workdir) / "tensorboard" / stage))

    def write(self, step: int, metrics: dict) -> None:
        """Writes the finite scalar metrics (NaN marks a metric a chunk did not compute)."""
        if not self._active:
            return
        metrics = {k: float(v) for k, v in metrics.items() if np.isfinite(v)}
        self._jsonl.write(json.dumps({"stage": self.stage, "step": step, **metrics}) + "\n")
        self._jsonl.flush()
        for key, value in metrics.items():
            self._tb.add_scalar(f"{self.stage}/{key}", value, step)

    def close(self) -> None:
        if self._active:
            self._jsonl.close()
            self._tb.close()
