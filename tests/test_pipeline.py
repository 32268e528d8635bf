"""The real pipeline end to end on the tiny preset: real MetaWorld, TFDS, orbax, evaluation."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clam_jax.data.episodes import write_episodes
from clam_jax.data.statistics import dataset_statistics
from clam_jax.errors import DataError
from tests.test_episodes_io import make_episodes

ROOT = Path(__file__).parents[1]


def cli(module, *args, timeout=600):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_train_runs_every_stage_and_writes_results(tmp_path):
    workdir = tmp_path / "run"
    every_method = "('clam', 'bc', 'bc_expert', 'vpt', 'lapo', 'lapa', 'dynamo', 'clam_decoded')"
    args = ["--config=configs/metaworld.py:tiny", f"--config.methods={every_method}", f"--workdir={workdir}"]
    done = cli("clam_jax.train", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "clam stage1" in done.stderr and "bc policy" in done.stderr
    assert "lapo stage1" in done.stderr and "lapa stage1" not in done.stderr  # LAPA reuses LAPO's LAM
    results = json.loads((workdir / "results.json").read_text())
    rows = {row["method"]: row for row in results["results"]}
    assert set(rows) == {"clam", "bc", "bc_expert", "vpt", "lapo", "lapa", "dynamo", "clam_decoded"}
    for row in rows.values():
        assert row["task"] == "assembly-v3" and row["seed"] == 0 and row["num_episodes"] == 4
        assert 0.0 <= row["success_rate"] <= 1.0
    stage1 = rows["clam"]["stage1"]
    assert np.isfinite([stage1["recon_loss"], stage1["cheat_loss"], stage1["decoder_mse_expert"]]).all()
    # clam_decoded imitates CLAM's decoded labels, from CLAM's own stage 1 (kept under clam/).
    labels = json.loads((workdir / "clam_decoded" / "summary.json").read_text())["labels"]
    assert labels["label_mse_expert"] == pytest.approx(stage1["decoder_mse_expert"], rel=1e-5)
    assert {p.name for p in (workdir / "clam_decoded" / "checkpoints").iterdir()} == {"policy"}
    vpt = json.loads((workdir / "vpt" / "summary.json").read_text())
    assert np.isfinite(vpt["idm"]["idm_mse_expert"]) and (workdir / "vpt" / "checkpoints" / "idm").is_dir()
    assert {p.name for p in (workdir / "lapa" / "checkpoints").iterdir()} == {"latent_policy", "policy"}
    assert {p.name for p in (workdir / "lapo" / "checkpoints").iterdir()} == {"stage1", "decoder", "policy"}
    assert 1.0 <= rows["lapo"]["stage1"]["vq_perplexity"] <= 64 and "vq_perplexity" not in stage1
    dynamo = json.loads((workdir / "dynamo" / "summary.json").read_text())["pretraining"]
    assert np.isfinite([dynamo["dynamics_loss"], dynamo["covariance_loss"], dynamo["embedding_std"]]).all()
    assert results["datasets"]["labeled"]["success_rate"] == 0.0
    assert results["datasets"]["expert"]["collect_wall_time_s"] > 0
    metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert {"recon_loss", "cheat_loss", "decoder_loss", "lam_grad_norm", "steps_per_s"} <= set(metrics[0])

    # Rerunning finds every stage done and reproduces the same results.
    again = cli("clam_jax.train", *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "clam stage1" not in again.stderr and "bc policy" not in again.stderr
    assert json.loads((workdir / "results.json").read_text())["results"] == results["results"]

    # The saved policy is self-describing: evaluate needs only its directory.
    evaluated = cli("clam_jax.evaluate", f"--policy={workdir / 'clam' / 'policy'}", "--episodes=4", "--videos=1")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    import imageio

    gif = imageio.mimread(workdir / "clam" / "policy" / "videos_test" / "episode_0.gif")
    assert len(gif) == 21 and gif[0].shape[:2] == (128, 128)  # reset frame + 20 steps
    standalone = json.loads((workdir / "clam" / "policy" / "evaluation_test.json").read_text())
    in_pipeline = json.loads((workdir / "clam" / "summary.json").read_text())["eval"]
    np.testing.assert_allclose(standalone["returns"], in_pipeline["returns"], rtol=1e-5)


@pytest.mark.parametrize("task", ["cheetah-run", "Hopper-v5"])
def test_locomotion_pipeline_collects_with_a_sac_agent_and_reports_normalized_returns(tmp_path, task):
    """dm_control and gymnasium's MuJoCo: the data agent trains (checkpointed), its buffer becomes the datasets
    with reference scores, and every method's row carries its normalized return."""
    workdir = tmp_path / "locomotion"
    done = cli("clam_jax.train", "--config=configs/dmc.py:tiny", f"--workdir={workdir}", f"--config.task={task}",
               "--config.methods=('clam','bc')")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    scores = results["datasets"]["expert"]["reference_scores"]
    assert set(scores) == {"random", "expert"} and results["datasets"]["unlabeled"]["num_episodes"] == 8
    for row in results["results"]:
        assert row["task"] == task and row["num_episodes"] == 4
        expected = (row["return_mean"] - scores["random"]) / (scores["expert"] - scores["random"])
        assert row["normalized_return"] == pytest.approx(expected)
    assert (workdir / "data" / "agent").is_dir()


def test_image_pipeline_runs_end_to_end_on_rendered_frames(tmp_path):
    """Space-Time CLAM and BC on frames with the arm's proprioception beside them: collection renders the
    frames, stage 1 streams frames and proprioception from the TFDS files, the latent policy starts from the
    IDM's encoder, BC uses an IMPALA-CNN, evaluation renders observations."""
    workdir = tmp_path / "images"
    done = cli("clam_jax.train", "--config=configs/metaworld_images.py:tiny", f"--workdir={workdir}",
               "--config.proprio=True", "--config.train.input=stream", "--config.train.stream_workers=0")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {row["method"]: row for row in json.loads((workdir / "results.json").read_text())["results"]}
    assert set(rows) == {"clam", "bc"} and all(row["num_episodes"] == 4 for row in rows.values())
    stage1 = rows["clam"]["stage1"]
    assert np.isfinite([stage1["recon_loss"], stage1["cheat_loss"], stage1["decoder_mse_expert"]]).all()
    stats = json.loads((workdir / "data" / "expert" / "statistics.json").read_text())
    assert stats["image_size"] == 32 and stats["frames_per_s"] > 0
    specs = {m: json.loads((workdir / m / "policy" / "policy.json").read_text()) for m in rows}
    assert specs["clam"]["policy"]["encoder"] == "space_time" and specs["bc"]["policy"]["encoder"] == "impala"
    for spec in specs.values():
        assert spec["proprio_dims"] == 4 and spec["normalizer"]["parts"]["image"] == {"pixels": True}
        assert len(spec["normalizer"]["parts"]["proprio"]["mean"]) == 4
    assert_standalone_evaluation_matches(workdir / "clam")


def assert_standalone_evaluation_matches(method_dir: Path):
    """`clam_jax.evaluate` of a saved policy gives the pipeline's evaluation (same variations)."""
    evaluated = cli("clam_jax.evaluate", f"--policy={method_dir / 'policy'}", "--episodes=4")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    standalone = json.loads((method_dir / "policy" / "evaluation_test.json").read_text())
    in_pipeline = json.loads((method_dir / "summary.json").read_text())["eval"]
    np.testing.assert_allclose(standalone["returns"], in_pipeline["returns"], rtol=1e-5)


@pytest.mark.parametrize("override,message", [
    ("--config.task=assembly-v9", "Unknown task 'assembly-v9'"),
    ("--config.methods=('clam','gail')", "Unknown method 'gail'"),
    ("--config.task=cheetah-run", "use it with configs/dmc.py"),
    ("--config.task=Hopper-v5", "Hopper-v5 is a gymnasium MuJoCo task; use it with configs/dmc.py"),
    ("--config.lam.kind=space_time", "The Space-Time LAM reads frames"),
    ("--config.proprio=True", "config.proprio puts the arm's proprioception beside frames"),
    ("--config.policy.chunk=0", "config.policy.chunk (steps each policy predicts) must be >= 1"),
    ("--config.lam.difference_scale=-1.0", "config.lam.difference_scale=-1.0 must be >= 0"),
    ("--config.labeled_from_unlabeled=-1", "config.labeled_from_unlabeled must be >= 0"),
])
def test_bad_config_stops_with_one_clear_line(tmp_path, override, message):
    done = cli("clam_jax.train", "--config=configs/metaworld.py:tiny", f"--workdir={tmp_path}", override,
               timeout=120)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    assert not (tmp_path / "data").exists()


def test_seeds_trained_together_match_a_seed_trained_alone(tmp_path):
    args = ["--config=configs/metaworld.py:tiny", "--config.methods=('clam', 'lapa')"]
    together = cli("clam_jax.train", *args, f"--workdir={tmp_path / 'together'}", "--seeds=0,1")
    assert together.returncode == 0, together.stderr[-3000:]
    assert "clam stage1 (2 seeds)" in together.stderr and "lapa policy (2 seeds)" in together.stderr
    alone = tmp_path / "alone"
    shutil.copytree(tmp_path / "together" / "seed1" / "data", alone / "data")
    done = cli("clam_jax.train", *args, f"--workdir={alone}", "--config.seed=1")
    assert done.returncode == 0, done.stderr[-3000:]

    def results(workdir):
        return {row["method"]: row for row in json.loads((workdir / "results.json").read_text())["results"]}

    grouped, single, seed0 = results(tmp_path / "together" / "seed1"), results(alone), results(
        tmp_path / "together" / "seed0")
    assert [row["seed"] for row in grouped.values()] == [1, 1] and seed0["clam"]["seed"] == 0
    for key in ("recon_loss", "decoder_mse_expert"):
        np.testing.assert_allclose(grouped["clam"]["stage1"][key], single["clam"]["stage1"][key], rtol=1e-3)
    assert grouped["clam"]["stage1"]["recon_loss"] != seed0["clam"]["stage1"]["recon_loss"]
    for method in ("clam", "lapa"):
        assert grouped[method]["success_rate"] == single[method]["success_rate"]
        np.testing.assert_allclose(grouped[method]["return_mean"], single[method]["return_mean"], rtol=1e-2)


def test_missing_workdir_flag_is_explained():
    done = cli("clam_jax.train", "--config=configs/metaworld.py:tiny", timeout=120)
    assert done.returncode != 0 and "--workdir are required" in done.stderr


def test_dataset_of_another_observation_size_is_refused(tiny_config, tmp_path):
    from clam_jax.collect import collection_signature, data_dir
    from clam_jax.stages import load_datasets

    config = tiny_config()
    root = data_dir(tmp_path)
    root.mkdir(parents=True)
    (root / "collect_config.json").write_text(json.dumps(collection_signature(config)))
    for name in ("unlabeled", "labeled", "expert"):
        write_episodes(root / name, make_episodes(obs_dim=12), {"num_episodes": 3})
    with pytest.raises(DataError, match=r"observations of size 12.*assembly-v3 has \(39, 4\)"):
        load_datasets(config, tmp_path)


def test_unlabeled_may_include_the_expert_episodes_and_labeled_be_drawn_from_unlabeled(tiny_config, tmp_path):
    from clam_jax.collect import collection_signature, data_dir
    from clam_jax.stages import load_datasets

    config = tiny_config()
    root = data_dir(tmp_path)
    root.mkdir(parents=True)
    (root / "collect_config.json").write_text(json.dumps(collection_signature(config)))
    made = {"unlabeled": make_episodes(n=3, seed=0), "labeled": make_episodes(n=2, seed=1),
            "expert": make_episodes(n=2, seed=2)}
    made["expert"] = dataclasses.replace(made["expert"], observations=made["expert"].observations + 5.0)
    for name, episodes in made.items():
        write_episodes(root / name, episodes, dataset_statistics(episodes))
    alone, alone_stats = load_datasets(config, tmp_path)
    assert alone["unlabeled"].num_episodes == 3
    config.unlabeled_includes_expert = True
    datasets, stats = load_datasets(config, tmp_path)
    np.testing.assert_array_equal(datasets["unlabeled"].observations,
                                  np.concatenate([made["unlabeled"].observations, made["expert"].observations]))
    assert stats["unlabeled"]["num_episodes"] == 5 and datasets["expert"].num_episodes == 2
    both = np.concatenate([made["unlabeled"].observations, made["expert"].observations]).reshape(-1, 39)
    np.testing.assert_allclose(stats["unlabeled"]["observation_mean"], both.mean(0), rtol=1e-5)
    assert stats["expert"] == alone_stats["expert"]

    config.labeled_from_unlabeled = 2
    datasets, stats = load_datasets(config, tmp_path)
    drawn = datasets["labeled"].observations
    assert drawn.shape[0] == 2 and stats["labeled"]["num_episodes"] == 2
    assert all(any(np.array_equal(episode, other) for other in made["unlabeled"].observations) for episode in drawn)
    np.testing.assert_array_equal(load_datasets(config, tmp_path)[0]["labeled"].actions, datasets["labeled"].actions)
    config.labeled_from_unlabeled = 4
    with pytest.raises(DataError, match="labeled_from_unlabeled=4 but D_unlabeled has 3 episodes"):
        load_datasets(config, tmp_path)


def test_the_paper_locomotion_views_of_the_data_are_refused_for_frames():
    from clam_jax.cli import load_config
    from clam_jax.errors import ConfigError
    from clam_jax.validation import validate_config

    config = load_config(ROOT / "configs" / "metaworld_images.py", "tiny")
    config.unlabeled_includes_expert = True
    with pytest.raises(ConfigError, match="unlabeled_includes_expert and config.labeled_from_unlabeled are options"):
        validate_config(config)


@pytest.mark.slow
def test_killed_run_resumes_and_matches_an_uninterrupted_run(tmp_path):
    import signal
    import time

    overrides = ["--config=configs/metaworld.py:tiny", "--config.stage1.steps=3000",
                 "--config.train.checkpoint_every=100", "--config.train.log_every=100"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert cli("clam_jax.train", *overrides, f"--workdir={straight}").returncode == 0
    shutil.copytree(straight / "data", killed / "data")

    proc = subprocess.Popen([sys.executable, "-m", "clam_jax.train", *overrides, f"--workdir={killed}"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = killed / "clam" / "checkpoints" / "stage1"
    deadline = time.time() + 300
    while time.time() < deadline and not any(p.name.isdigit() and int(p.name) >= 500
                                             for p in checkpoints.glob("*")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "clam" / "policy").exists(), "the run finished before it could be killed"

    resumed = cli("clam_jax.train", *overrides, f"--workdir={killed}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = json.loads((straight / "results.json").read_text())["results"]
    b = json.loads((killed / "results.json").read_text())["results"]
    for x, y in zip(a, b, strict=True):
        assert x["success_rate"] == y["success_rate"]
        np.testing.assert_allclose(x["return_mean"], y["return_mean"], rtol=1e-6)
    sa = json.loads((straight / "clam" / "summary.json").read_text())["stage1"]
    sb = json.loads((killed / "clam" / "summary.json").read_text())["stage1"]
    assert sa["decoder_mse_expert"] == sb["decoder_mse_expert"]


@pytest.mark.slow
def test_quick_preset_learns_a_grounded_latent_space(tmp_path):
    """The README's main command (minutes on 2 cores): reconstruction beats the identity shortcut,
    and the jointly trained decoder recovers the play data's actions far better than their mean."""
    done = cli("clam_jax.train", "--config=configs/metaworld.py:quick", f"--workdir={tmp_path}", timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    stage1 = {row["method"]: row for row in results["results"]}["clam"]["stage1"]
    assert stage1["recon_loss"] < 0.5 * stage1["cheat_loss"]
    labeled = json.loads((tmp_path / "data" / "labeled" / "statistics.json").read_text())
    assert stage1["decoder_mse_labeled"] < 0.5 * np.mean(np.square(labeled["action_std"]))
