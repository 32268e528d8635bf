"""Runs the whole CLAM pipeline and its reference points on one task.

  python -m clam_jax.train --config=configs/metaworld.py:quick --workdir=runs/quick

Stages: collect (if the datasets are missing) -> CLAM stage 1 (LAM + joint
action decoder; with `stage1.joint=False` the decoder is fitted afterwards) ->
relabel D_unlabeled_expert with the frozen IDM -> stage 2 latent policy ->
evaluation; plus BC on D_labeled (`bc`), privileged BC on D_unlabeled_expert's
true actions (`bc_expert`), VPT (an IDM fitted to D_labeled labels the
expert episodes for BC), LAPO (CLAM with quantized latents and the decoder
fitted afterwards), LAPA (quantized-latent pretraining, then fine-tuning on
D_labeled) and DynaMo (BC on D_labeled over an encoder pretrained by latent
dynamics); the recipes are in `clam_jax.recipes`. Every stage is skipped when
its output is in the workdir and resumes from its last checkpoint when it was
interrupted. Results go to `<workdir>/results.json`.

  python -m clam_jax.train --config=configs/metaworld.py:quick --workdir=runs/q --seeds=0,1,2

trains three seeds (each with its own datasets) in one program, each stage
with a seed axis, into `runs/q/seed0` .. `runs/q/seed2`: for accelerators,
which one small model leaves mostly idle.
"""
import copy
import json
import time
from pathlib import Path

import jax
import numpy as np
from absl import flags
from jax.experimental.multihost_utils import sync_global_devices

from clam_jax.cli import FLAGS, run_cli, use_headless_rendering
from clam_jax.collect import collect_datasets
from clam_jax.envs.tasks import task_options
from clam_jax.errors import ConfigError
from clam_jax.recipes import RECIPES
from clam_jax.rollout.evaluation import evaluate
from clam_jax.rollout.saved_policy import load_policy
from clam_jax.rollout.videos import save_videos
from clam_jax.stages import Run, StageLog, load_datasets, make_normalizer, proprio_size
from clam_jax.training.sharding import check_batch_divisible, make_mesh
from clam_jax.validation import validate_config

flags.DEFINE_list("seeds", None, "Train these seeds of the config together in one program (a seed axis), "
                  "each in <workdir>/seed<N>, e.g. --seeds=0,1,2.")


def run_evaluation(config, workdir: Path, method: str, log: StageLog) -> dict | None:
    """Evaluates `method`'s saved policy; returns the evaluation on process 0, None elsewhere.

    Every process restores the policy (orbax restores collectively), only process 0
    runs the simulator, and all processes meet afterwards before the next stage.
    """
    if not log.done("eval"):
        start = time.perf_counter()
        act, _ = load_policy(workdir / method / "policy", execution=config.eval.chunk_execution,
                             ensemble_m=config.eval.ensemble_m)
        if jax.process_index() == 0:
            result = evaluate(act, config.task, num_episodes=config.eval.episodes, split=config.eval.split,
                              max_steps=config.max_steps, action_repeat=config.action_repeat,
                              num_workers=config.eval.num_workers, videos=config.eval.videos,
                              image_size=config.image_size if config.observation == "image" else 0,
                              proprio_dims=proprio_size(config), env_options=task_options(config))
            frames = result.pop("frames", None)
            if frames is not None:
                save_videos(workdir / method / "videos", frames)
            log.record("eval", {"wall_time_s": time.perf_counter() - start, **result})
    sync_global_devices(f"clam_jax: {method} evaluated")
    return log.entries.get("eval") if jax.process_index() == 0 else None


def run(config, workdir) -> list[dict]:
    """Runs every stage that is not yet done and returns the rows of results.json."""
    return run_group([config], [workdir])[0]


def run_group(configs: list, workdirs: list) -> list[list[dict]]:
    """Runs configs that differ only in their seed, each in its workdir, training each stage of all of
    them in one program (a seed axis, see `clam_jax.training.seeds`); returns each run's rows."""
    for config in configs:
        validate_config(config)
    check_same_but_seed(configs)
    config = configs[0]
    mesh = make_mesh()
    for name in ("stage1.batch_size", "stage1.labeled_batch_size", "policy.batch_size"):
        section, key = name.split(".")
        check_batch_divisible(config[section][key], mesh, f"config.{name}")
    workdirs = [Path(workdir) for workdir in workdirs]
    if jax.process_index() == 0:  # one process collects; the others read what it wrote (shared workdir)
        for run_config, workdir in zip(configs, workdirs):
            collect_datasets(run_config, workdir)
    sync_global_devices("clam_jax: datasets ready")
    runs, stats = [], []
    for run_config, workdir in zip(configs, workdirs):
        datasets, run_stats = load_datasets(run_config, workdir)
        run = Run(run_config, workdir, datasets, make_normalizer(run_config, run_stats))
        for method in config.methods:
            run.log(method)
        runs.append(run)
        stats.append(run_stats)
    rows = [[] for _ in runs]
    for method in config.methods:
        RECIPES[method](runs, mesh)
        for run, run_stats, run_rows in zip(runs, stats, rows):
            log = run.log(method)
            result = run_evaluation(run.config, run.workdir, method, log)
            if result is not None:
                return_mean = float(np.mean(result["returns"]))
                reference = run_stats["expert"].get("reference_scores")
                run_rows.append({
                    "task": config.task, "method": method, "success_rate": result["success_rate"],
                    "num_episodes": result["num_episodes"], "seed": run.config.seed, "split": result["split"],
                    "return_mean": return_mean,
                    **({"normalized_return": normalized_return(return_mean, reference)} if reference else {}),
                    "wall_time_s": {k: v["wall_time_s"] for k, v in log.entries.items()},
                    **({"stage1": log.entries["stage1"]} if method in ("clam", "lapo") else {})})
    if jax.process_index() == 0:
        for run, run_stats, run_rows in zip(runs, stats, rows):
            write_results(run, run_stats, run_rows)
    return rows


def normalized_return(score: float, reference: dict) -> float:
    """(score - random) / (expert - random): 0 for uniform random actions, 1 for the data agent's final policy."""
    return (score - reference["random"]) / (reference["expert"] - reference["random"])


def check_same_but_seed(configs: list) -> None:
    """Raises ConfigError unless the configs differ at most in their seed."""
    def without_seed(config):
        return {k: v for k, v in config.to_dict().items() if k != "seed"}

    for config in configs[1:]:
        if without_seed(config) != without_seed(configs[0]):
            raise ConfigError("Runs trained together must have the same config but for the seed; train runs with "
                              "other differences separately.")


def write_results(run: Run, stats: dict, rows: list[dict]) -> None:
    """`<workdir>/results.json`: the config, the datasets' statistics and a row per method."""
    payload = {"config": run.config.to_dict(), "datasets": {
        name: {k: s.get(k) for k in ("num_episodes", "episodes_attempted", "success_rate", "return_mean",
                                     "collect_wall_time_s", "reference_scores")}
        for name, s in stats.items()},
        "results": rows}
    (run.workdir / "results.json").write_text(json.dumps(payload, indent=2))
    for row in rows:
        normalized = f", normalized return {row['normalized_return']:.2f}" if "normalized_return" in row else ""
        print(f"{row['method']:>10} seed {row['seed']}: success {row['success_rate']:.2f}, return "
              f"{row['return_mean']:.1f}{normalized} over {row['num_episodes']} episodes")


def run_seeds(config, workdir, seeds: list[int]) -> list[list[dict]]:
    """`config` at each of `seeds` in `<workdir>/seed<N>`, trained together."""
    configs = []
    for seed in seeds:
        seeded = copy.deepcopy(config)
        seeded.seed = seed
        configs.append(seeded)
    return run_group(configs, [Path(workdir) / f"seed{seed}" for seed in seeds])


def main(argv):
    del argv
    use_headless_rendering()  # frames, videos, and dm_control (which otherwise opens GLFW on import)
    if FLAGS.config is not None:
        if FLAGS.config.train.compilation_cache_dir:
            jax.config.update("jax_compilation_cache_dir", FLAGS.config.train.compilation_cache_dir)
    if FLAGS.seeds:
        run_cli(lambda: run_seeds(FLAGS.config, FLAGS.workdir, [int(seed) for seed in FLAGS.seeds]))
    else:
        run_cli(lambda: run(FLAGS.config, FLAGS.workdir))


if __name__ == "__main__":
    from absl import app

    app.run(main)
