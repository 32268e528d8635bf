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


def test_whole_pipeline_runs_as_two_processes_like_one(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", PYTHON=sys.executable)
    args = ["-m", "clam_jax.train", "--config=configs/metaworld.py:tiny", "--config.methods=('clam','lapo')"]
    two = subprocess.run(["bash", "launch/local.sh", "2", *args, f"--workdir={tmp_path / 'two'}"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, *args, f"--workdir={tmp_path / 'one'}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    rows = {name: json.loads((tmp_path / name / "results.json").read_text())["results"] for name in ("one", "two")}
    assert [r["method"] for r in rows["two"]] == ["clam", "lapo"]
    np.testing.assert_allclose(rows["two"][0]["stage1"]["decoder_mse_expert"],
                               rows["one"][0]["stage1"]["decoder_mse_expert"], rtol=1e-3)
    stages = [json.loads(line)["stage"] for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert stages.count("clam/stage1") == 2  # logged by process 0 only (steps 20 and 40)
