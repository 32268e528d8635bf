"""Each method's variant chosen on one grid (`val` variations or initial states) and reported on another (`test`).

  python -m clam_jax.selection --val=runs/dmc_val --test=runs/dmc_table
  python -m clam_jax.selection --val=runs/ablations,runs/labels --test=runs/table,runs/table_diff

The README's protocol as a tool: a grid of variants evaluated on `val` picks, per method, the variant with the
highest mean (over tasks, of each task's mean over seeds); the `test` grid's records of those variants are the
method's reported numbers, so no `test` number chooses anything. Only variants run for every (task, seed) cell
that any variant of the method has on `val`, and also run on `test`, are candidates; on a tie the earlier variant
in the `val` records wins. Either side may gather several grids (their records together; a variant of a method
on a task and seed in two of them is an error). Prints the `val` means of every candidate and the `test` table of
the chosen ones, and writes the latter to `selection.md` in the first `test` grid.
"""
import json
import sys
from pathlib import Path

import numpy as np
from absl import app, flags

from clam_jax.errors import DataError
from clam_jax.results_table import aggregate, markdown_table, row_label

flags.DEFINE_list("val", None, "Workdirs of the grids that choose (their results.json), e.g. runs/dmc_val.")
flags.DEFINE_list("test", None, "Workdirs of the grids that report, e.g. runs/dmc_table.")
flags.DEFINE_enum("metric", "auto", ["auto", "success_rate", "normalized_return"],
                  "What to compare; auto: normalized_return where every record has it, else success_rate.")


def variant_means(records: list[dict], metric: str) -> dict[str, dict[str, float]]:
    """method -> variant -> the mean over tasks of each task's mean over seeds, for the variants that cover every
    (task, seed) cell the method has in `records`."""
    cells: dict[str, dict[str, set]] = {}
    for r in records:
        cells.setdefault(r["method"], {}).setdefault(r.get("variant", "default"), set()).add((r["task"], r["seed"]))
    per_task = aggregate(records, metric)
    means = {}
    for method, variants in cells.items():
        covered = set().union(*variants.values())
        tasks = sorted({task for task, _ in covered})
        means[method] = {
            variant: float(np.mean([np.mean(per_task[(row_label({"method": method, "variant": variant}), task)])
                                    for task in tasks]))
            for variant, keys in variants.items() if keys == covered}
    return means


def select_variants(val_records: list[dict], test_records: list[dict], metric: str) -> dict[str, str]:
    """method -> the variant with the highest `val` mean among those `test_records` also have for it."""
    return _choose(variant_means(val_records, metric), test_records)


def _choose(means: dict[str, dict[str, float]], test_records: list[dict]) -> dict[str, str]:
    on_test = {(r["method"], r.get("variant", "default")) for r in test_records}
    chosen = {}
    for method, method_means in means.items():
        candidates = {variant: mean for variant, mean in method_means.items() if (method, variant) in on_test}
        if candidates:
            chosen[method] = max(candidates, key=candidates.get)
    if not chosen:
        raise DataError("No method has a variant run on every `val` cell and also on `test`: nothing to select.")
    return chosen


def selection_report(val_records: list[dict], test_records: list[dict], metric: str) -> tuple[str, str]:
    """(the `val` means of every candidate, the chosen one marked; the `test` table of the chosen variants)."""
    means = variant_means(val_records, metric)
    chosen = _choose(means, test_records)
    lines = [f"{method}: " + ", ".join(f"{'*' if variant == chosen[method] else ''}{variant} {mean:.2f}"
                                       for variant, mean in means[method].items())
             for method in chosen]
    labels = [row_label({"method": method, "variant": variant}) for method, variant in chosen.items()]
    picked = [r for r in test_records if chosen.get(r["method"]) == r.get("variant", "default")]
    return "\n".join(lines) + "\n", markdown_table(picked, rows={label: label for label in labels}, metric=metric)


def read_records(workdirs: list[str] | None, flag: str) -> list[dict]:
    """The records of the grids in `workdirs`, together; refuses a cell (method, variant, task, seed) twice."""
    if not workdirs:
        raise DataError(f"--{flag} is required: workdirs of finished experiment grids (each has results.json).")
    records, origin = [], {}
    for workdir in workdirs:
        path = Path(workdir) / "results.json"
        if not path.exists():
            raise DataError(f"{path} does not exist: --{flag} takes workdirs of `clam_jax.experiments` grids.")
        for r in json.loads(path.read_text()):
            cell = (r["method"], r.get("variant", "default"), r["task"], r["seed"])
            if origin.setdefault(cell, workdir) != workdir:
                raise DataError(f"{cell[0]} ({cell[1]}) on {cell[2]} seed {cell[3]} is in both {origin[cell]} and "
                                f"{workdir}: give the grids' columns distinct variant names.")
            records.append(r)
    return records


def main(argv):
    del argv
    try:
        val_records, test_records = read_records(flags.FLAGS.val, "val"), read_records(flags.FLAGS.test, "test")
        metric = flags.FLAGS.metric
        if metric == "auto":
            every = val_records + test_records
            metric = "normalized_return" if all("normalized_return" in r for r in every) else "success_rate"
        val_means, test_table = selection_report(val_records, test_records, metric)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    (Path(flags.FLAGS.test[0]) / "selection.md").write_text(test_table)
    print(f"{metric} on val (mean over tasks and seeds; * chosen):\n{val_means}\non test, the chosen variants:\n"
          f"{test_table}")


if __name__ == "__main__":
    app.run(main)
