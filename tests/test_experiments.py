"""The experiment runner: overrides, the results table, and a real grid that resumes without redoing cells."""
import copy
import json
import shutil
from pathlib import Path

import ml_collections
import pytest

from clam_jax.cli import load_config
from clam_jax.errors import ConfigError
from clam_jax.experiments import (cell_config, cell_overrides, grid_columns, link_trained, parse_overrides,
                                  task_overrides)
from clam_jax.results_table import markdown_table
from clam_jax.stages import StageLog
from tests.test_pipeline import cli

EXPERIMENT_CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "experiments").glob("*.py"))
# Variants beside each config's default.
OTHER_VARIANTS = {"dmc_table": ("val", "gym_tasks"), "metaworld_ablations": ("drift", "labels"),
                  "metaworld_table": ("differences",)}


def record(method, task, seed, rate, variant="default"):
    return {"method": method, "variant": variant, "task": task, "seed": seed, "success_rate": rate}


def test_table_gives_mean_and_std_over_seeds_and_marks_the_best_non_privileged_entry():
    records = [record("clam", "assembly", s, r) for s, r in ((0, 0.7), (1, 0.5), (2, 0.6))]
    records += [record("bc", "assembly", s, r) for s, r in ((0, 0.0), (1, 0.2), (2, 0.1))]
    records += [record("bc_expert", "assembly", s, 1.0) for s in (0, 1, 2)]
    records += [record("clam", "bin-picking", s, r) for s, r in ((0, 0.4), (1, 0.2))]
    records += [record("bc", "bin-picking", s, 0.5) for s in (0, 1)]
    records += [record("clam", "assembly", s, 0.0, variant="separate") for s in (0, 1)]
    lines = markdown_table(records).splitlines()
    assert lines[0] == "| method | assembly | bin-picking | mean |"
    assert lines[2] == "| clam | **0.60 ± 0.08 (3)** | 0.30 ± 0.10 (2) | **0.45** |"
    assert lines[3] == "| bc | 0.10 ± 0.08 (3) | **0.50 ± 0.00 (2)** | 0.30 |"
    assert lines[4] == "| bc_expert (privileged) | 1.00 ± 0.00 (3) | - | - |"
    assert lines[5] == "| clam (separate) | 0.00 ± 0.00 (2) | - | - |"
    assert len(lines) == 6


def test_table_of_normalized_returns_for_locomotion():
    records = [{**record("clam", "cheetah-run", s, 0.0), "normalized_return": r} for s, r in ((0, 0.8), (1, 0.6))]
    records += [{**record("bc", "cheetah-run", s, 0.0), "normalized_return": -0.1} for s in (0, 1)]
    lines = markdown_table(records, metric="normalized_return").splitlines()
    assert lines[2] == "| clam | **0.70 ± 0.10 (2)** | **0.70** |"
    assert lines[3] == "| bc | -0.10 ± 0.00 (2) | -0.10 |"


def test_overrides_are_python_literals_on_existing_fields(tiny_config):
    assert parse_overrides("stage1.joint=False; lam.latent_dim = 8;") == [("stage1.joint", False),
                                                                          ("lam.latent_dim", 8)]
    config = cell_config(tiny_config(), "bin-picking-v3", 3, "stage1.beta=0.5; methods=('clam',)")
    assert (config.task, config.seed, config.stage1.beta, config.methods) == ("bin-picking-v3", 3, 0.5, ("clam",))
    with pytest.raises(ConfigError, match="not of the form"):
        parse_overrides("stage1.joint")
    with pytest.raises(ConfigError, match="not a Python literal"):
        parse_overrides("task=assembly")
    with pytest.raises(ConfigError, match="no field 'jiont'"):
        cell_config(tiny_config(), "assembly-v3", 0, "stage1.jiont=False")


def test_a_column_may_give_each_task_its_own_overrides():
    per_task = {"cheetah-run": "lam.difference_scale=1.6", "walker-walk": "lam.difference_scale=2.3"}
    assert task_overrides("stage1.joint=False", "walker-walk") == "stage1.joint=False"
    assert task_overrides(per_task, "walker-walk") == "lam.difference_scale=2.3"
    with pytest.raises(ConfigError, match="not 'hopper-hop'"):
        task_overrides(per_task, "hopper-hop")


def test_a_task_may_have_base_overrides_that_every_column_starts_from():
    experiment = ml_collections.ConfigDict({"task_base": {"Hopper-v5": "agent.episodes=300"}})
    per_task = {"Hopper-v5": "lam.difference_scale=1.0", "cheetah-run": ""}
    assert cell_overrides(experiment, per_task, "Hopper-v5") == "agent.episodes=300; lam.difference_scale=1.0"
    assert cell_overrides(experiment, "lam.future=0", "Hopper-v5") == "agent.episodes=300; lam.future=0"
    assert cell_overrides(experiment, per_task, "cheetah-run") == ""
    assert cell_overrides(ml_collections.ConfigDict(), "lam.future=0", "cheetah-run") == "lam.future=0"


@pytest.mark.parametrize("path,variant", [(path, variant) for path in EXPERIMENT_CONFIGS
                                          for variant in ("", *OTHER_VARIANTS.get(path.stem, ()))],
                         ids=lambda x: getattr(x, "stem", x))
def test_every_cell_of_every_experiment_config_is_a_valid_config(path, variant):
    """A misspelt override or method in a grid fails here, not hours into the run."""
    from clam_jax.validation import validate_config

    experiment = load_config(path, variant)
    for _, overrides, _ in grid_columns(experiment):
        for task in experiment.tasks:
            validate_config(cell_config(experiment.base, task, experiment.seeds[0],
                                        cell_overrides(experiment, overrides, task)))


def test_grid_shares_data_between_variants_and_resumes_without_redoing_cells(tmp_path):
    args = ["--config=configs/experiments/metaworld_table.py:smoke", f"--workdir={tmp_path}"]
    first = cli("clam_jax.experiments", *args, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    records = json.loads((tmp_path / "results.json").read_text())
    assert sorted((r["variant"], r["method"], r["seed"]) for r in records) == [
        ("default", "bc", 0), ("default", "bc", 1), ("separate", "clam", 0), ("separate", "clam", 1)]
    assert len(list((tmp_path / "data").iterdir())) == 2  # one dataset copy per seed, shared by both variants
    seed0 = tmp_path / "runs" / "assembly-v3" / "seed0"
    assert (seed0 / "default" / "data").resolve() == (seed0 / "separate" / "data").resolve()
    assert "| bc |" in (tmp_path / "table.md").read_text()

    assert first.stdout.count("assembly-v3 seed") == 4  # one line per cell trained

    # The val grid over the same cells evaluates their policies on its split, training nothing.
    val = cli("clam_jax.experiments", *args[:1], "--config.base.eval.split=val", f"--workdir={tmp_path / 'val'}",
              f"--policies_from={tmp_path}", timeout=600)
    assert val.returncode == 0, val.stderr[-3000:]
    assert "policy" not in val.stderr and "stage1" not in val.stderr and "collect" not in val.stderr
    val_cell = json.loads((tmp_path / "val/runs/assembly-v3/seed1/separate/results.json").read_text())
    assert [(r["method"], r["split"]) for r in val_cell["results"]] == [("clam", "val")]
    assert sorted((r["variant"], r["method"], r["seed"]) for r in json.loads(
        (tmp_path / "val/results.json").read_text())) == sorted((r["variant"], r["method"], r["seed"]) for r in records)
    statistics = sorted((tmp_path / "data").glob("*/unlabeled/statistics.json"))
    collected = [p.stat().st_mtime_ns for p in statistics]

    shutil.rmtree(tmp_path / "runs" / "assembly-v3" / "seed1" / "separate")
    report = cli("clam_jax.experiments", *args, "--report_only", timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "assembly-v3 seed" not in report.stdout and not (tmp_path / "runs/assembly-v3/seed1/separate").exists()
    assert len(json.loads((tmp_path / "results.json").read_text())) == 3  # the finished cells only
    again = cli("clam_jax.experiments", *args, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("assembly-v3 seed") == 1 and "assembly-v3 seed 1 separate:" in again.stdout
    assert "bc policy" not in again.stderr
    assert [p.stat().st_mtime_ns for p in statistics] == collected  # the shared datasets were reused
    redone = json.loads((tmp_path / "results.json").read_text())
    assert [r for r in redone if r["variant"] == "default"] == [r for r in records if r["variant"] == "default"]
    ablation = (tmp_path / "ablation.md").read_text().splitlines()
    assert ablation[3].startswith("| continuous, separate | ") and ablation[4].startswith("| discrete, joint | - |")

    # A method added to the grid is trained in the finished cells; the methods already there are not.
    added = cli("clam_jax.experiments", *args, "--config.base.methods=('bc', 'bc_expert')", timeout=900)
    assert added.returncode == 0, added.stderr[-3000:]
    assert added.stderr.count("bc_expert policy") and "bc policy" not in added.stderr
    assert added.stdout.count("assembly-v3 seed") == 2 and "separate:" not in added.stdout
    methods = [(r["method"], r["seed"]) for r in json.loads((tmp_path / "results.json").read_text())
               if r["variant"] == "default"]
    assert sorted(methods) == [("bc", 0), ("bc", 1), ("bc_expert", 0), ("bc_expert", 1)]
    assert (tmp_path / "plots" / "assembly-v3.png").stat().st_size > 0


def test_a_sweep_trains_its_methods_at_every_point_and_plots_them(tmp_path):
    done = cli("clam_jax.experiments", "--config=configs/experiments/metaworld_sweeps.py:smoke",
               f"--workdir={tmp_path}", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    records = json.loads((tmp_path / "results.json").read_text())
    assert [(r["method"], r["sweep"], r["sweep_point"], r["variant"]) for r in records] == [
        ("bc", "labeled_episodes", "2", "labeled_episodes-2"), ("bc", "labeled_episodes", "4", "labeled_episodes-4")]
    labeled = sorted(json.loads(p.read_text())["num_episodes"]
                     for p in (tmp_path / "data").glob("*/labeled/statistics.json"))
    assert labeled == [2, 4]  # each point collected its own play data
    table = (tmp_path / "sweeps.md").read_text()
    assert "| bc (labeled_episodes-2) |" in table and "| bc (labeled_episodes-4) |" in table
    assert not (tmp_path / "table.md").exists()
    assert (tmp_path / "plots" / "sweep_labeled_episodes_assembly-v3.png").stat().st_size > 0


def test_runs_trained_together_must_differ_only_in_their_seed(tiny_config, tmp_path):
    from clam_jax.train import run_group

    first, second = tiny_config(), tiny_config()
    second.seed, second.stage1.beta = 1, 0.5
    with pytest.raises(ConfigError, match="same config but for the seed"):
        run_group([first, second], [tmp_path / "a", tmp_path / "b"])
    assert not (tmp_path / "a").exists()


def test_a_cell_links_another_grids_trained_policies_only_when_trained_alike(tiny_config, tmp_path):
    source, here = tmp_path / "test_grid" / "cell", tmp_path / "val_grid" / "cell"
    trained = tiny_config()
    trained.methods = ("bc", "clam")
    (source / "data").mkdir(parents=True)
    (source / "bc" / "policy").mkdir(parents=True)
    stored = trained.to_dict()
    del stored["labeled_from_unlabeled"]  # a field added to the code after the source was trained
    (source / "results.json").write_text(json.dumps({"config": stored, "results": []}))
    source_log = StageLog(source / "bc")
    source_log.record("stage2", {"wall_time_s": 3.0, "steps": 10})
    source_log.record("eval", {"wall_time_s": 1.0, "split": "test"})
    config = copy.deepcopy(trained)
    config.eval.split, config.methods = "val", ("bc",)

    with pytest.raises(ConfigError, match="no finished run"):
        link_trained(tmp_path / "elsewhere", here, config, trained)
    for path, value in (("stage1.beta", 0.5), ("labeled_from_unlabeled", 10)):
        other = cell_config(config, config.task, config.seed, f"{path}={value}")
        with pytest.raises(ConfigError, match=rf"other values of \['{path}'\]"):
            link_trained(source, here, other, trained)
    other = copy.deepcopy(config)
    other.methods = ("bc", "clam")
    with pytest.raises(ConfigError, match=r"not finished \['clam'\]"):
        link_trained(source, here, other, trained)
    assert not here.exists()

    link_trained(source, here, config, trained)
    assert (here / "data").resolve() == (source / "data").resolve()
    assert (here / "bc" / "policy").resolve() == (source / "bc" / "policy").resolve()
    assert not (here / "bc" / "checkpoints").exists()
    assert StageLog(here / "bc").entries == {"stage2": {"wall_time_s": 3.0, "steps": 10}}
