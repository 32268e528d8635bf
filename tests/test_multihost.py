"""Two real JAX processes on localhost form one mesh (CPU collectives over gloo)."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(num_processes: int, workdir: Path) -> list[dict]:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", PYTHONPATH=str(ROOT))
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "tests/multihost_worker.py", str(port), str(num_processes), str(i),
                               str(workdir)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(num_processes)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def test_two_processes_train_as_one_and_match_a_single_process(tmp_path):
    two = launch(2, tmp_path / "two")
    one = launch(1, tmp_path / "one")[0]
    assert [r["processes"] for r in two] == [2, 2] and two[0]["devices"] == 4
    assert two[0]["checksum"] == two[1]["checksum"]
    np.testing.assert_allclose(two[0]["checksum"], one["checksum"], rtol=1e-4)
    np.testing.assert_allclose(two[0]["loss"], one["loss"], rtol=1e-3)
    # Only process 0 writes metrics: one line per log step, not two.
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [20, 40, 60]
    assert (tmp_path / "two" / "checkpoints" / "60").exists()
