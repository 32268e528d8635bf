"""Round-trip latency and sustained step rate of the robot bridge on loopback, against the simulation alone.

Starts `python -m clam_jax.bridge.server --backend=sim` as a process, steps the
simulated arm through a client for each image size, and steps the same
simulator in this process without the bridge; the difference is what the
bridge costs (encoding, PNG compression of frames over 64 KiB, the socket).
Prints one JSON line per image size:

  python benchmarks/bridge_latency.py
  python benchmarks/bridge_latency.py --sizes 84 480x640 --steps 200
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

from clam_jax.bridge.client import RobotClient  # noqa: E402
from clam_jax.envs.metaworld import MetaWorldTask  # noqa: E402

ROOT = Path(__file__).parents[1]


def parse_size(text: str) -> tuple[int, int]:
    """"84" -> (84, 84); "480x640" -> (480, 640) (height x width)."""
    height, _, width = text.partition("x")
    return int(height), int(width or height)


def direct_step_s(size: tuple[int, int], steps: int, actions: np.ndarray) -> float:
    """Seconds per step of the simulator and its camera alone."""
    env = MetaWorldTask("assembly-v3", max_steps=steps, action_repeat=2)
    env.reset(0)
    env.render(size[1], size[0])  # the renderer is built on the first frame: not part of a step
    start = time.perf_counter()
    for action in actions:
        env.step(action)
        env.render(size[1], size[0])
    elapsed = time.perf_counter() - start
    env.close()
    return elapsed / steps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", default=["84", "480x640"])
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-m", "clam_jax.bridge.server", "--backend=sim", "--port=0"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline().split("port")[1])
        actions = np.random.default_rng(0).uniform(-1, 1, (args.steps, 4)).astype(np.float32)
        with RobotClient(f"tcp://127.0.0.1:{port}", timeout_s=60) as client:
            client.hello()
            for text in args.sizes:
                size = parse_size(text)
                client.init(image_height=size[0], image_width=size[1], task="assembly-v3", max_steps=args.steps,
                            action_repeat=2)
                client.reset(0)
                latencies = []
                start = time.perf_counter()
                for action in actions:
                    sent = time.perf_counter()
                    client.step(np.concatenate([action[:3] * 0.02, np.zeros(3), action[3:]]))
                    latencies.append(time.perf_counter() - sent)
                wall = time.perf_counter() - start
                direct = direct_step_s(size, args.steps, actions)
                print(json.dumps({
                    "image": f"{size[0]}x{size[1]}", "steps": args.steps,
                    "round_trip_ms_median": round(1e3 * float(np.median(latencies)), 2),
                    "round_trip_ms_p95": round(1e3 * float(np.percentile(latencies, 95)), 2),
                    "steps_per_s": round(args.steps / wall, 1),
                    "simulator_alone_ms": round(1e3 * direct, 2),
                    "bridge_overhead_ms": round(1e3 * (float(np.median(latencies)) - direct), 2)}), flush=True)
    finally:
        server.kill()


if __name__ == "__main__":
    main()
