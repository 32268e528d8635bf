"""A grid of tasks x seeds x variants, each a full `clam_jax.train` run, gathered into the paper's tables.

  python -m clam_jax.experiments --config=configs/experiments/metaworld_table.py --workdir=runs/table

Each cell (task, seed, variant) is one training run of the base config with
that task and seed and the variant's overrides (e.g. `stage1.joint=False`),
training every method of its `methods` in `<workdir>/runs/<task>/seed<seed>/<variant>`.
Cells with the same data recipe share one copy of the datasets
(`<workdir>/data/<recipe hash>`, linked into each run), so a variant that only
changes training never re-collects. A cell with a results.json is done and
skipped, and an interrupted cell resumes from its checkpoints, so rerunning the
command continues an interrupted grid. Writes `<workdir>/results.json` (one
record per method and cell) and `<workdir>/table.md`.
"""
import ast
import copy
import hashlib
import json
import time
from pathlib import Path

from clam_jax.cli import FLAGS, run_cli
from clam_jax.collect import collection_signature
from clam_jax.errors import ConfigError
from clam_jax.results_table import markdown_table


def parse_overrides(text: str) -> list[tuple[str, object]]:
    """"stage1.joint=False; lam.latent_dim=8" -> [("stage1.joint", False), ("lam.latent_dim", 8)]."""
    overrides = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        path, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"Override {item!r} is not of the form path=value.")
        try:
            overrides.append((path.strip(), ast.literal_eval(value.strip())))
        except (ValueError, SyntaxError) as e:
            raise ConfigError(f"Override {item!r}: {value.strip()!r} is not a Python literal.") from e
    return overrides


def cell_config(base, task: str, seed: int, overrides: str):
    config = copy.deepcopy(base)
    config.task, config.seed = task, seed
    for path, value in parse_overrides(overrides):
        *parents, key = path.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        if key not in node:
            raise ConfigError(f"Override {path}: the base config has no field {key!r} there.")
        node[key] = value
    return config


def config_hash(config) -> str:
    return hashlib.sha256(config.to_json(sort_keys=True).encode()).hexdigest()[:12]


def _shared_data(workdir: Path, run_dir: Path, config) -> None:
    """Links the run's data folder to the grid's copy for its recipe (made on first use)."""
    recipe = json.dumps(collection_signature(config), sort_keys=True, default=list)
    shared = workdir / "data" / hashlib.sha256(recipe.encode()).hexdigest()[:12]
    shared.mkdir(parents=True, exist_ok=True)
    link = run_dir / "data"
    if not link.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        link.symlink_to(shared.resolve(), target_is_directory=True)


def run_cell(workdir: Path, config, variant: str) -> list[dict]:
    """Trains (or finds) one cell and returns its records."""
    from clam_jax.train import run

    run_dir = workdir / "runs" / config.task / f"seed{config.seed}" / variant
    results = run_dir / "results.json"
    if not results.exists():
        _shared_data(workdir, run_dir, config)
        start = time.perf_counter()
        run(config, run_dir)
        print(f"{config.task} seed {config.seed} {variant}: {time.perf_counter() - start:.0f} s", flush=True)
    rows = json.loads(results.read_text())["results"]
    return [{"method": r["method"], "variant": variant, "task": r["task"], "seed": r["seed"],
             "success_rate": r["success_rate"], "num_episodes": r["num_episodes"],
             "wall_time_s": r["wall_time_s"], "config_hash": config_hash(config)} for r in rows]


def run_grid(experiment, workdir) -> list[dict]:
    workdir = Path(workdir)
    records = []
    for variant, overrides in experiment.variants.items():
        for task in experiment.tasks:
            for seed in experiment.seeds:
                records += run_cell(workdir, cell_config(experiment.base, task, seed, overrides), variant)
    (workdir / "results.json").write_text(json.dumps(records, indent=2))
    (workdir / "table.md").write_text(markdown_table(records))
    print(markdown_table(records))
    return records


def main(argv):
    del argv
    run_cli(lambda: run_grid(FLAGS.config, FLAGS.workdir))


if __name__ == "__main__":
    from absl import app

    app.run(main)
