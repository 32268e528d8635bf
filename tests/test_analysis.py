"""Latent-space analysis: probes, effective rank, codebook usage; the quickstart notebook run top to bottom."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clam_jax.analysis import (LABEL_LAGS, _codebook, codebook_usage, effective_rank, lag_weights, linear_probe,
                               mlp_probe, r2_score)
from clam_jax.errors import DataError

ROOT = Path(__file__).parents[1]


def actions_and_noise(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, 4)), rng.normal(size=(n, 16))


def test_r2_is_one_for_exact_predictions_zero_for_the_mean_and_pools_dimensions():
    y = np.random.default_rng(0).normal(size=(100, 3)) * [1.0, 10.0, 0.0]
    assert r2_score(y, y) == 1.0
    assert r2_score(y, np.broadcast_to(y.mean(0), y.shape)) == pytest.approx(0.0)
    assert np.isfinite(r2_score(y, y + 0.1))  # a constant dimension does not divide by zero


def test_probes_find_latents_that_map_actions_and_not_noise():
    actions, noise = actions_and_noise()
    mixing = np.random.default_rng(1).normal(size=(4, 16))
    linear = actions @ mixing
    curved = np.tanh(linear)  # invertible but not linear
    half = len(actions) // 2

    def scores(fit, z):
        """R² on the second half of a probe fitted on the first."""
        return r2_score(actions[half:], fit(z[:half], actions[:half])(z[half:]))

    assert scores(linear_probe, linear) > 0.999
    assert abs(scores(linear_probe, noise)) < 0.05
    assert scores(mlp_probe, curved) > 0.9
    assert scores(mlp_probe, noise) < 0.1


def test_lag_weights_find_how_labels_mix_neighbouring_actions():
    actions = np.random.default_rng(0).uniform(-1, 1, (20, 50, 2))
    np.testing.assert_allclose(lag_weights(actions, actions), np.eye(len(LABEL_LAGS))[[LABEL_LAGS.index(0)] * 2],
                               atol=1e-9)
    blurred = actions.copy()
    blurred[:, 1:-1] = 0.25 * actions[:, :-2] + 0.5 * actions[:, 1:-1] + 0.25 * actions[:, 2:]
    expected = dict(zip(LABEL_LAGS, [0.0] * len(LABEL_LAGS))) | {-1: 0.25, 0: 0.5, 1: 0.25}
    np.testing.assert_allclose(lag_weights(blurred, actions), [list(expected.values())] * 2, atol=1e-9)
    with pytest.raises(DataError, match="episodes longer than 5 steps"):
        lag_weights(actions[:, :5], actions[:, :5])


def test_effective_rank_counts_the_directions_rows_spread_in():
    rng = np.random.default_rng(0)
    assert effective_rank(np.diag([1.0, 1.0, 1.0, 1.0, 0.0])) == pytest.approx(4 / 5 * 5 / 4 * 4, rel=0.1)
    one_direction = rng.normal(size=(500, 1)) @ rng.normal(size=(1, 8))
    assert effective_rank(one_direction) == pytest.approx(1.0, abs=1e-3)
    assert effective_rank(rng.normal(size=(5000, 8))) == pytest.approx(8.0, rel=0.02)


def test_codebook_usage_counts_the_codewords_in_use():
    codebook = np.stack([np.arange(8.0)[:, None] * np.ones((1, 2))] * 2)  # 2 codebooks of 8 codewords of 2 dims
    picks = np.random.default_rng(0).integers(0, 4, (1000, 2, 3))  # 3 tokens per codebook, 4 codewords used
    z = codebook[0][picks].reshape(1000, -1) + 1e-6  # straight-through outputs: codewords up to rounding
    usage = codebook_usage(z, codebook, tokens=3)
    assert usage["codebook_usage"] == 0.5
    assert usage["codebook_perplexity"] == pytest.approx(4.0, rel=0.01)


def test_the_codebook_is_found_among_a_quantized_lams_variables():
    import jax

    from clam_jax.models.lam import make_latent_action_model

    lam = make_latent_action_model("mlp", obs_dim=3, latent_dim=8, context=1, future=0, dtype="float32",
                                   hidden=(8,), codebook_size=16, codebooks=2, tokens=2)
    variables = lam.init(jax.random.key(0), lam.example_window())
    assert _codebook(variables).shape == (2, 16, 2)


def test_a_run_without_a_latent_action_model_is_explained(tmp_path):
    from clam_jax.analysis import analyze_run

    with pytest.raises(DataError, match="no method with a LAM to analyse"):
        analyze_run(tmp_path)


def test_quickstart_notebook_runs_top_to_bottom_and_the_cli_analyses_its_run(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    os.environ["CLAM_QUICKSTART_WORKDIR"] = str(tmp_path / "run")
    try:
        NotebookClient(notebook, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    finally:
        del os.environ["CLAM_QUICKSTART_WORKDIR"]
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {}) or "image/gif" in o.get("data", {})]
    assert len(images) >= 4  # curves (2 methods), latents, success, the rollout
    assert any("linear probe R²" in o.get("data", {}).get("text/markdown", "") for o in outputs)

    done = subprocess.run([sys.executable, "-m", "clam_jax.analyze", f"--workdir={tmp_path / 'run'}",
                           "--probe_steps=200"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| linear probe R² (held-out / expert) |" in done.stdout
    [report] = json.loads((tmp_path / "run" / "analysis.json").read_text())
    assert report["method"] == "clam" and -1 <= report["linear_probe_r2_held_out"] <= 1
    assert report["recon_loss_unlabeled"] > 0 and report["cheat_loss_unlabeled"] > 0
    assert len(report["latent_variance"]) == 4 and 1 <= report["effective_rank"] <= 4
    assert (tmp_path / "run" / "plots" / "latents_clam.png").stat().st_size > 0
