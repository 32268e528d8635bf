"""Experiment results -> the paper's comparison table (mean ± std over seeds, methods x tasks)."""
import numpy as np

PRIVILEGED = ("bc_expert",)


def row_label(record: dict) -> str:
    """"clam" for the default variant, "clam (separate)" for a named ablation variant."""
    variant = record.get("variant", "default")
    return record["method"] if variant == "default" else f"{record['method']} ({variant})"


def aggregate(records: list[dict], metric: str = "success_rate") -> dict[tuple[str, str], list[float]]:
    """(row label, task) -> the records' `metric` over seeds, in seed order."""
    cells: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for r in records:
        cells.setdefault((row_label(r), r["task"]), []).append((r["seed"], r[metric]))
    return {key: [rate for _, rate in sorted(values)] for key, values in cells.items()}


def markdown_table(records: list[dict], rows: dict[str, str] | None = None, metric: str = "success_rate") -> str:
    """Rows = methods (in order of appearance), columns = tasks then their mean; cells "mean ± std (n)" of
    `metric` ("success_rate", or "normalized_return" for locomotion).

    In each column the best non-privileged mean is bold; privileged rows (BC-Expert, which
    imitates the expert's true actions) are marked and never bold. `rows` (shown name -> row
    label, e.g. {"discrete, separate": "lapo"}) picks, orders and names the rows instead.
    """
    cells = aggregate(records, metric)
    shown = rows or {label: label for label in dict.fromkeys(row_label(r) for r in records)}
    rows = list(shown.values())
    tasks = list(dict.fromkeys(r["task"] for r in records))
    means = {key: float(np.mean(v)) for key, v in cells.items()}
    for row in rows:
        per_task = [means[(row, t)] for t in tasks if (row, t) in means]
        if len(per_task) == len(tasks):
            means[(row, "mean")] = float(np.mean(per_task))
    columns = tasks + ["mean"]
    best = {}
    for column in columns:
        candidates = [means[(row, column)] for row in rows
                      if (row, column) in means and row.split(" ")[0] not in PRIVILEGED]
        best[column] = max(candidates) if candidates else None

    def cell(row, column):
        if (row, column) not in means:
            return "-"
        if column == "mean":
            text = f"{means[(row, column)]:.2f}"
        else:
            rates = cells[(row, column)]
            text = f"{np.mean(rates):.2f} ± {np.std(rates):.2f} ({len(rates)})"
        is_best = best[column] is not None and np.isclose(means[(row, column)], best[column])
        return f"**{text}**" if is_best and row.split(" ")[0] not in PRIVILEGED else text

    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in shown.items():
        name = f"{name} (privileged)" if row.split(" ")[0] in PRIVILEGED else name
        lines.append(f"| {name} | " + " | ".join(cell(row, c) for c in columns) + " |")
    return "\n".join(lines) + "\n"
