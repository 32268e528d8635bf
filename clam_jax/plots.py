"""PNG plots of experiment records: a bar chart per task (paper Figure 3) and sweep curves (Figure 4).

Records are those of `clam_jax.experiments`: method, variant, task, seed,
success_rate (and normalized_return on dm_control), and for cells of a sweep,
`sweep` and `sweep_point`. `metric` picks the plotted one.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from clam_jax.results_table import PRIVILEGED, aggregate  # noqa: E402


def task_bar_charts(records: list[dict], directory: Path, metric: str = "success_rate") -> list[Path]:
    """`<directory>/<task>.png` per task: mean `metric` per method (and variant) over seeds, with the
    standard deviation as error bars and every seed as a dot; privileged methods hatched."""
    cells = aggregate([r for r in records if "sweep" not in r], metric)
    paths = []
    for task in dict.fromkeys(task for _, task in cells):
        rows = [(label, rates) for (label, t), rates in cells.items() if t == task]
        fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(rows), 3.6))
        x = np.arange(len(rows))
        for i, (label, rates) in enumerate(rows):
            ax.bar(i, np.mean(rates), yerr=np.std(rates), capsize=3, color=f"C{i % 10}", alpha=0.8,
                   hatch="//" if label.split(" ")[0] in PRIVILEGED else None)
            ax.plot(np.full(len(rates), i), rates, "k.", markersize=4)
        ax.set_xticks(x, [label for label, _ in rows], rotation=35, ha="right")
        _metric_axis(ax, metric)
        ax.set_title(f"{task} ({max(len(r) for _, r in rows)} seeds)")
        paths.append(_save(fig, Path(directory) / f"{task}.png"))
    return paths


def sweep_plots(records: list[dict], directory: Path, metric: str = "success_rate") -> list[Path]:
    """`<directory>/sweep_<name>_<task>.png` per sweep and task: `metric` against the swept value, one line
    per method, the band one standard deviation over seeds."""
    paths = []
    sweeps = dict.fromkeys((r["sweep"], r["task"]) for r in records if "sweep" in r)
    for name, task in sweeps:
        cell_records = [r for r in records if r.get("sweep") == name and r["task"] == task]
        points = list(dict.fromkeys(r["sweep_point"] for r in cell_records))
        fig, ax = plt.subplots(figsize=(4.5, 3.4))
        for method in dict.fromkeys(r["method"] for r in cell_records):
            rates = [[r[metric] for r in cell_records if r["method"] == method and r["sweep_point"] == p]
                     for p in points]
            shown = [i for i, r in enumerate(rates) if r]
            mean = np.array([np.mean(rates[i]) for i in shown])
            std = np.array([np.std(rates[i]) for i in shown])
            ax.plot(shown, mean, "o-", label=method)
            ax.fill_between(shown, mean - std, mean + std, alpha=0.2)
        ax.set_xticks(range(len(points)), points)
        ax.set_xlabel(name)
        _metric_axis(ax, metric)
        ax.set_title(task)
        ax.legend()
        paths.append(_save(fig, Path(directory) / f"sweep_{name}_{task}.png"))
    return paths


def _metric_axis(ax, metric: str) -> None:
    ax.set_ylabel(metric.replace("_", " "))
    if metric == "success_rate":
        ax.set_ylim(0, 1.05)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
