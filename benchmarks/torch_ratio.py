"""Steps/s of clam_jax against the PyTorch reference (../shared/bench/torch_ref.py), alternated in one run.

A machine's speed drifts (on the 2-core CPU here by up to 10% within minutes), so a ratio means something
only when both sides are measured close together and more than once. For each model, at the reference's
batch size: the reference runs in its own process, under an interpreter that has torch (never a dependency
of this project), then the stage-1 training of `python -m clam_jax.benchmark` (same program, K steps per
dispatch) runs for `--seconds`; that pair is repeated `--rounds` times. One JSON line per pair, then a table.

  python benchmarks/torch_ratio.py --torch-python /path/to/torch-venv/bin/python
  python benchmarks/torch_ratio.py --torch-python python3 --steps-per-dispatch 1000 --models mlp   # on a GPU
"""
import argparse
import json
import subprocess
from pathlib import Path

import jax
import ml_collections

from clam_jax.benchmark import REFERENCE_BATCH, measure, timed_dispatches
from clam_jax.cli import load_config
from clam_jax.training.sharding import make_mesh

ROOT = Path(__file__).resolve().parents[1]
TORCH_STEPS = {"mlp": 600, "transformer": 150}  # about 20 s each on the 2-core CPU


def torch_steps_per_s(args, model: str) -> dict:
    command = [args.torch_python, str(args.torch_ref), "--model", model, "--batch", str(REFERENCE_BATCH[model]),
               "--steps", str(args.torch_steps or TORCH_STEPS[model])]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--torch-python", required=True, help="an interpreter with torch installed")
    parser.add_argument("--torch-ref", type=Path, default=ROOT.parent / "shared/bench/torch_ref.py")
    parser.add_argument("--models", nargs="+", default=["mlp", "transformer"], choices=sorted(REFERENCE_BATCH))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0, help="JAX measurement time per round")
    parser.add_argument("--steps-per-dispatch", type=int, default=100)
    parser.add_argument("--torch-steps", type=int, default=0, help="reference steps per round (0: per model)")
    args = parser.parse_args()
    if not args.torch_ref.is_file():
        parser.error(f"no PyTorch reference at {args.torch_ref}; pass --torch-ref")
    config = load_config(ROOT / "configs/benchmark.py")
    config.min_seconds = args.seconds
    mesh = make_mesh()
    rows = []
    for model in args.models:
        spec = ml_collections.ConfigDict(dict(model=model, batch=REFERENCE_BATCH[model],
                                              steps_per_dispatch=args.steps_per_dispatch, seeds=1,
                                              compute_dtype="float32"))
        run = None
        for round_ in range(args.rounds):
            reference = torch_steps_per_s(args, model)
            if run is None:  # compiles, then times
                record, run = measure(config, mesh, spec)
                steps_per_s = record["steps_per_s"]
            else:
                run["state"], steps, seconds = timed_dispatches(run["multi_step"], run["state"], run["data"],
                                                                spec.steps_per_dispatch, args.seconds)
                steps_per_s = steps / seconds
            row = {"model": model, "batch": spec.batch, "steps_per_dispatch": spec.steps_per_dispatch,
                   "round": round_, "torch_steps_per_s": reference["steps_per_s"],
                   "jax_steps_per_s": round(steps_per_s, 2), "ratio": round(steps_per_s / reference["steps_per_s"], 2),
                   "device": jax.devices()[0].device_kind, "torch_device": reference["device"],
                   "torch": reference["torch"], "jax": jax.__version__}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("| model | batch | K | round | PyTorch steps/s | clam_jax steps/s | ratio |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['steps_per_dispatch']} | {r['round']} | {r['torch_steps_per_s']} "
              f"| {r['jax_steps_per_s']} | {r['ratio']}x |")


if __name__ == "__main__":
    main()
