"""Analyses a finished run's latent action models and plots it.

  python -m clam_jax.analyze --workdir=runs/quick

Prints the table of `clam_jax.analysis` (one column per method with a LAM and a
decoder: clam, lapo), writes `<workdir>/analysis.json`, and `<workdir>/plots/`:
training curves per method, the latents of held-out episodes projected to 2-D
(`latents_<method>.png`) and the success rate per method (`<task>.png`).
"""
import json
import sys
from pathlib import Path

from absl import app, flags, logging

from clam_jax.cli import FLAGS  # --workdir: the run's, as given to clam_jax.train
from clam_jax.errors import ClamError

flags.DEFINE_list("methods", None, "The methods to analyse (default: every one with a LAM and a decoder).")
flags.DEFINE_integer("probe_steps", 2000, "Training steps of the MLP probe.")


def plot_run(workdir: Path, reports: list[dict]) -> list[Path]:
    """The run's plots in `<workdir>/plots`: training curves, latent projections, success per method."""
    from clam_jax import plots

    directory = workdir / "plots"
    paths = plots.training_curves(workdir, directory)
    for report in reports:
        paths.append(plots.latent_projection(report["latents"], report["actions"],
                                             directory / f"latents_{report['method']}.png", report["method"]))
    results = workdir / "results.json"
    if results.exists():
        paths += plots.task_bar_charts(json.loads(results.read_text())["results"], directory)
    return paths


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from clam_jax.analysis import analyze_run, format_table, json_ready

    if FLAGS.workdir is None:
        sys.exit("error: --workdir is required: the workdir of a finished run, e.g. --workdir=runs/quick")
    workdir = Path(FLAGS.workdir)
    try:
        reports = analyze_run(workdir, FLAGS.methods, probe_steps=FLAGS.probe_steps)
    except ClamError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    (workdir / "analysis.json").write_text(json.dumps([json_ready(r) for r in reports], indent=2))
    print(format_table(reports))
    for path in plot_run(workdir, reports):
        print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
