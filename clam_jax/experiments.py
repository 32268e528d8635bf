"""A grid of tasks x seeds x variants, each a full `clam_jax.train` run, gathered into the paper's tables.

  python -m clam_jax.experiments --config=configs/experiments/metaworld_table.py --workdir=runs/table

Each cell (task, seed, variant) is one training run of the base config with
that task and seed and the variant's overrides (e.g. `stage1.joint=False`; a
mapping task -> overrides where a column's value differs per task), after the
task's own (`task_base`, a mapping task -> overrides for every column), training
every method of its `methods` in `<workdir>/runs/<task>/seed<seed>/<variant>`;
`seeds_per_program` seeds of a task and variant train together in one program
(a seed axis: for accelerators, which one small model leaves idle).
Cells with the same data recipe share one copy of the datasets
(`<workdir>/data/<recipe hash>`, linked into each run), so a variant that only
changes training never re-collects. A cell with a results.json is done and
skipped, and an interrupted cell resumes from its checkpoints, so rerunning the
command continues an interrupted grid; methods added to a finished cell are
trained and evaluated on their own. With `--policies_from=<another grid's workdir>` nothing is trained: each
cell evaluates, on its own split, the policies the same cell of that grid trained (which must have the same
config but for `eval` and `methods`), e.g. `configs/experiments/dmc_table.py:val` with
`--policies_from=runs/dmc_table` puts the `test` grid's policies on the `val` initial states.

Writes `<workdir>/results.json` (one record per method and cell), `<workdir>/table.md`, where the experiment
names `ablation_rows`, `<workdir>/ablation.md` (those rows alone, renamed), for its `sweeps` (a name -> methods
and points, each point a label and overrides) `<workdir>/sweeps.md`, and PNG plots in `<workdir>/plots/`: a bar
chart per task and a curve per sweep and task.
"""
import ast
import copy
import hashlib
import json
import time
from pathlib import Path

from absl import flags

from clam_jax.cli import FLAGS, run_cli, use_headless_rendering
from clam_jax.collect import collection_signature
from clam_jax.errors import ConfigError
from clam_jax.plots import sweep_plots, task_bar_charts
from clam_jax.results_table import markdown_table
from clam_jax.stages import StageLog


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


def task_overrides(overrides, task: str) -> str:
    """A column's overrides for `task`: one string for every task, or a mapping task -> overrides (a value the
    same rule gives each task differently, e.g. a scale derived from each task's data)."""
    if isinstance(overrides, str):
        return overrides
    if task not in overrides:
        raise ConfigError(f"The column's overrides name the tasks {sorted(overrides)}, not {task!r}.")
    return overrides[task]


def cell_overrides(experiment, overrides, task: str) -> str:
    """The task's own base overrides (the experiment's `task_base`: task -> overrides, e.g. a longer data agent run
    for a task that needs one), then the column's for `task`."""
    return "; ".join(filter(None, (experiment.get("task_base", {}).get(task, ""), task_overrides(overrides, task))))


def config_hash(config) -> str:
    return hashlib.sha256(config.to_json(sort_keys=True).encode()).hexdigest()[:12]


def _shared_data(workdir: Path, run_dir: Path, config) -> None:
    """Links the run's data folder to the grid's copy for its recipe (made on first use)."""
    recipe = json.dumps(collection_signature(config), sort_keys=True, default=list)
    shared = workdir / "data" / hashlib.sha256(recipe.encode()).hexdigest()[:12]
    shared.mkdir(parents=True, exist_ok=True)
    _link(run_dir / "data", shared)


def _link(link: Path, target: Path) -> None:
    """`link` -> `target`'s absolute path, unless `link` exists already."""
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target.resolve(), target_is_directory=True)


def _finished(results: Path, methods) -> bool:
    """Whether the run left results for every method (a method added to the grid later reruns the
    cell, and `clam_jax.train` skips the methods it already finished)."""
    if not results.exists():
        return False
    return set(methods) <= {r["method"] for r in json.loads(results.read_text())["results"]}


def cell_dir(workdir: Path, config, variant: str) -> Path:
    return workdir / "runs" / config.task / f"seed{config.seed}" / variant


def _flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    flat = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return flat


def _training_fields(config: dict) -> dict:
    """The config's fields as results.json stores them, by dotted path, without those that do not change
    training (`eval`, `methods`)."""
    return {path: value for path, value in _flatten(json.loads(json.dumps(config))).items()
            if path.split(".")[0] not in ("eval", "methods")}


def link_trained(source: Path, run_dir: Path, config, base) -> None:
    """Links into `run_dir` the data of the cell `source` of another grid and the saved policies (and
    checkpoints) of every method of `config` trained there, with their training logs but not their
    evaluation, so that the run evaluates them on its own split without training (`--policies_from`).
    A field the source's stored config lacks (added to the code since) counts as the grid's `base` value."""
    results = source / "results.json"
    if not results.exists():
        raise ConfigError(f"--policies_from: {source} has no finished run; run that grid's cell first.")
    trained = _training_fields(json.loads(results.read_text())["config"])
    wanted, preset = _training_fields(config.to_dict()), _training_fields(base.to_dict())
    differing = sorted(k for k in trained.keys() | wanted.keys()
                       if trained.get(k, preset.get(k)) != wanted.get(k))
    if differing:
        raise ConfigError(f"--policies_from: {source} was trained with other values of {differing}; "
                          "only eval and methods may differ.")
    logs = {method: StageLog(source / method) for method in config.methods}
    unfinished = [method for method, log in logs.items() if not log.done("eval")]
    if unfinished:
        raise ConfigError(f"--policies_from: {source} has not finished {unfinished}; train them there first.")
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ["data"] + [f"{method}/{part}" for method in logs for part in ("policy", "checkpoints")]:
        if (source / name).exists():
            _link(run_dir / name, source / name)
    for method, log in logs.items():
        linked = StageLog(run_dir / method)
        for stage, entry in log.entries.items():
            if stage != "eval" and not linked.done(stage):
                linked.record(stage, entry)


def run_cells(workdir: Path, configs: list, variant: str, fields: dict, train: bool = True,
              policies_from: Path | None = None, base=None) -> list[dict]:
    """Trains (or finds) the cells of `configs` (one column and task, several seeds), the unfinished ones
    together in one program, and returns their records (with `fields` added to each); with `train=False`,
    only the records of the finished cells; with `policies_from`, the cells evaluate the policies that grid
    trained (`link_trained`, `base` the grid's base config)."""
    from clam_jax.train import run_group

    cells = [(config, cell_dir(workdir, config, variant)) for config in configs]
    todo = [(config, run_dir) for config, run_dir in cells if not _finished(run_dir / "results.json", config.methods)]
    if todo and train:
        for config, run_dir in todo:
            if policies_from is None:
                _shared_data(workdir, run_dir, config)
            else:
                link_trained(cell_dir(policies_from, config, variant), run_dir, config, base)
        start = time.perf_counter()
        run_group([config for config, _ in todo], [run_dir for _, run_dir in todo])
        for config, _ in todo:
            print(f"{config.task} seed {config.seed} {variant}: {time.perf_counter() - start:.0f} s", flush=True)
    unfinished = {run_dir for _, run_dir in todo} if not train else set()
    records = []
    for config, run_dir in cells:
        if run_dir in unfinished:
            continue
        records += [{"method": r["method"], "variant": variant, "task": r["task"], "seed": r["seed"],
                     "success_rate": r["success_rate"], "num_episodes": r["num_episodes"],
                     **{k: r[k] for k in ("normalized_return",) if k in r},
                     "wall_time_s": r["wall_time_s"], "config_hash": config_hash(config), **fields}
                    for r in json.loads((run_dir / "results.json").read_text())["results"]]
    return records


def grid_columns(experiment):
    """(variant, overrides, record fields) per column of the grid: the variants, then every point of
    every sweep (variant "<sweep>-<point>", trained for the sweep's methods only)."""
    columns = [(variant, overrides, {}) for variant, overrides in experiment.variants.items()]
    for name, sweep in experiment.get("sweeps", {}).items():
        methods = f"methods={tuple(sweep.methods)!r}"
        columns += [(f"{name}-{point}", f"{overrides}; {methods}", {"sweep": name, "sweep_point": point})
                    for point, overrides in sweep.points]
    return columns


def write_outputs(experiment, workdir: Path, records: list[dict]) -> list[str]:
    """results.json, the markdown tables and the plots of the records so far; returns the tables."""
    (workdir / "results.json").write_text(json.dumps(records, indent=2))
    main = [r for r in records if "sweep" not in r]
    swept = [r for r in records if "sweep" in r]
    metric = experiment.get("metric", "success_rate")
    tables = {}
    if main:
        tables["table.md"] = markdown_table(main, metric=metric)
        if "ablation_rows" in experiment:
            tables["ablation.md"] = markdown_table(main, rows=dict(experiment.ablation_rows), metric=metric)
    if swept:
        tables["sweeps.md"] = markdown_table(swept, metric=metric)
    for name, table in tables.items():
        (workdir / name).write_text(table)
    task_bar_charts(main, workdir / "plots", metric)
    sweep_plots(swept, workdir / "plots", metric)
    return list(tables.values())


def run_grid(experiment, workdir, train: bool = True, policies_from=None) -> list[dict]:
    """Runs the columns one by one, task by task, `seeds_per_program` seeds at a time (trained together,
    see `clam_jax.train.run_group`), rewriting the outputs after each group; with `train=False`, writes
    the outputs of the finished cells and trains nothing; with `policies_from` (another grid's workdir),
    evaluates the policies of that grid's cells instead of training."""
    workdir = Path(workdir)
    policies_from = Path(policies_from) if policies_from else None
    per_program = experiment.get("seeds_per_program", 1)
    records = []
    for variant, overrides, fields in grid_columns(experiment):
        for task in experiment.tasks:
            for first in range(0, len(experiment.seeds), per_program):
                seeds = experiment.seeds[first:first + per_program]
                configs = [cell_config(experiment.base, task, seed, cell_overrides(experiment, overrides, task))
                           for seed in seeds]
                records += run_cells(workdir, configs, variant, fields, train, policies_from, experiment.base)
                tables = write_outputs(experiment, workdir, records)
    print("\n".join(tables))
    return records


flags.DEFINE_bool("report_only", False, "Write results.json, the tables and plots of the finished cells, "
                  "training nothing (e.g. while another process runs the grid).")
flags.DEFINE_string("policies_from", None, "Another grid's workdir: evaluate the policies its cells trained (same "
                    "config but for eval and methods) on this grid's split instead of training, e.g. a val grid "
                    "over the test grid's runs.")


def main(argv):
    del argv
    use_headless_rendering()  # dm_control otherwise opens GLFW on import, in the evaluations
    run_cli(lambda: run_grid(FLAGS.config, FLAGS.workdir, train=not FLAGS.report_only,
                             policies_from=FLAGS.policies_from))


if __name__ == "__main__":
    from absl import app

    app.run(main)
