"""PNG plots: experiment records as a bar chart per task (paper Figure 3) and sweep curves (Figure 4); a run's
training curves; latent actions projected to 2-D.

Records are those of `clam_jax.experiments` (or a run's results.json rows):
method, variant, task, seed, success_rate (and normalized_return on locomotion),
and for cells of a sweep, `sweep` and `sweep_point`. `metric` picks the plotted one.
"""
import json
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


def training_curves(workdir, directory: Path) -> list[Path]:
    """`<directory>/curves_<method>.png` per method of the run in `workdir`: every stage's losses against the
    step, from its metrics.jsonl (stage 1: reconstruction against the cheat loss, and the decoder's loss)."""
    records = [json.loads(line) for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]
    stages = dict.fromkeys(r["stage"] for r in records)
    paths = []
    for method in dict.fromkeys(stage.split("/")[0] for stage in stages):
        own = [stage for stage in stages if stage.split("/")[0] == method]
        fig, axes = plt.subplots(1, len(own), figsize=(4.2 * len(own), 3.2), squeeze=False)
        for ax, stage in zip(axes[0], own):
            rows = [r for r in records if r["stage"] == stage]
            keys = [k for k in ("recon_loss", "cheat_loss", "decoder_loss", "dynamics_loss") if k in rows[0]]
            for key in keys or ["loss"]:
                steps = [r["step"] for r in rows if np.isfinite(r.get(key, np.nan))]
                ax.plot(steps, [r[key] for r in rows if np.isfinite(r.get(key, np.nan))], ".-", label=key)
            ax.set_yscale("log")
            ax.set_xlabel("step")
            ax.set_title(stage)
            ax.legend()
        paths.append(_save(fig, Path(directory) / f"curves_{method}.png"))
    return paths


def latent_projection(latents: np.ndarray, actions: np.ndarray, path: Path, title: str = "") -> Path:
    """Latent actions [M, Z] projected on their first two principal components, one panel per action
    component coloured by its true value: a grounded latent space shows smooth colour gradients."""
    centered = latents - latents.mean(0)
    _, _, components = np.linalg.svd(centered, full_matrices=False)
    projected = centered @ components[:2].T
    dims = actions.shape[-1]
    fig, axes = plt.subplots(1, dims, figsize=(3.2 * dims, 3.2), squeeze=False)
    for i, ax in enumerate(axes[0]):
        points = ax.scatter(projected[:, 0], projected[:, 1], c=actions[:, i], s=3, cmap="coolwarm")
        fig.colorbar(points, ax=ax)
        ax.set_title(f"{title} action[{i}]".strip())
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, Path(path))


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
