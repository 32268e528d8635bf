"""Choosing each method's variant on `val` records and reporting it on `test` records."""
import json

import pytest

from clam_jax.errors import DataError
from clam_jax.selection import read_records, select_variants, selection_report, variant_means
from tests.test_pipeline import cli


def records(method, variant, rates, tasks=("assembly", "bin")):
    """One record per task and seed: rates[task index][seed]."""
    return [{"method": method, "variant": variant, "task": task, "seed": seed, "success_rate": rate}
            for task, task_rates in zip(tasks, rates) for seed, rate in enumerate(task_rates)]


VAL = (records("clam", "default", [[0.4, 0.6], [0.2, 0.2]])  # mean over tasks 0.35
       + records("clam", "differences", [[0.8, 0.6], [0.6, 0.8]])  # 0.70
       + records("clam", "paper_window", [[1.0, 1.0]], tasks=("assembly",))  # bin-picking not run
       + records("vpt", "default", [[0.5, 0.5], [0.5, 0.5]])  # 0.50, ties with differences
       + records("vpt", "differences", [[0.0, 1.0], [1.0, 0.0]])
       + records("lapo", "default", [[0.9, 0.9], [0.9, 0.9]])  # best on val, never run on test
       + records("lapo", "differences", [[0.1, 0.1], [0.1, 0.1]]))
TEST = (records("clam", "default", [[0.9, 0.9], [0.9, 0.9]])  # best on test: must not be chosen
        + records("clam", "differences", [[0.5, 0.7], [0.4, 0.2]])
        + records("clam", "paper_window", [[1.0, 1.0], [1.0, 1.0]])
        + records("vpt", "default", [[0.3, 0.1], [0.0, 0.2]])
        + records("vpt", "differences", [[1.0, 1.0], [1.0, 1.0]])
        + records("lapo", "differences", [[0.2, 0.2], [0.2, 0.2]]))


def test_variant_means_average_tasks_and_leave_out_variants_missing_a_cell():
    means = variant_means(VAL, "success_rate")
    assert means["clam"] == pytest.approx({"default": 0.35, "differences": 0.70})
    assert means["vpt"] == pytest.approx({"default": 0.5, "differences": 0.5})


def test_val_chooses_among_the_variants_also_on_test_and_ties_keep_the_earlier():
    assert select_variants(VAL, TEST, "success_rate") == {"clam": "differences", "vpt": "default",
                                                          "lapo": "differences"}


def test_report_gives_the_chosen_variants_test_numbers():
    val_means, table = selection_report(VAL, TEST, "success_rate")
    assert val_means.splitlines()[0] == "clam: default 0.35, *differences 0.70"
    lines = table.splitlines()
    assert lines[0] == "| method | assembly | bin | mean |"
    assert lines[2] == "| clam (differences) | **0.60 ± 0.10 (2)** | **0.30 ± 0.10 (2)** | **0.45** |"
    assert lines[3] == "| vpt | 0.20 ± 0.10 (2) | 0.10 ± 0.10 (2) | 0.15 |"
    assert lines[4] == "| lapo (differences) | 0.20 ± 0.00 (2) | 0.20 ± 0.00 (2) | 0.20 |"


def test_nothing_in_common_is_a_clear_error():
    with pytest.raises(DataError, match="nothing to select"):
        select_variants(VAL, records("bc", "default", [[1.0]]), "success_rate")


def test_cli_writes_the_selection_beside_the_test_grid_and_refuses_a_missing_grid(tmp_path):
    (tmp_path / "val").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "val" / "results.json").write_text(json.dumps(VAL))
    (tmp_path / "test" / "results.json").write_text(json.dumps(TEST))
    done = cli("clam_jax.selection", f"--val={tmp_path / 'val'}", f"--test={tmp_path / 'test'}", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "success_rate on val" in done.stdout and "*differences 0.70" in done.stdout
    assert "| clam (differences) |" in (tmp_path / "test" / "selection.md").read_text()
    missing = cli("clam_jax.selection", f"--val={tmp_path / 'nowhere'}", f"--test={tmp_path / 'test'}", timeout=120)
    assert missing.returncode == 2 and "results.json does not exist" in missing.stderr


def test_several_grids_on_each_side_are_read_together_and_a_cell_in_two_of_them_is_refused(tmp_path):
    grids = {"limits": [r for r in VAL if r["variant"] != "differences"],
             "labels": [r for r in VAL if r["variant"] == "differences"], "again": VAL[:1]}
    for name, grid_records in grids.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(grid_records))
    together = read_records([str(tmp_path / "limits"), str(tmp_path / "labels")], "val")
    assert select_variants(together, TEST, "success_rate") == select_variants(VAL, TEST, "success_rate")
    with pytest.raises(DataError, match=r"clam \(default\) on assembly seed 0 is in both .*limits and .*again"):
        read_records([str(tmp_path / "limits"), str(tmp_path / "again")], "val")
