"""Evaluates a saved policy in simulation, or on a robot served by `clam_jax.bridge.server`.

  python -m clam_jax.evaluate --policy=runs/quick/clam/policy --episodes=30
  python -m clam_jax.evaluate --policy=runs/images/clam/policy --robot=tcp://robot-host:5556 --episodes=10
  python -m clam_jax.evaluate --policy=runs/quick/clam/policy --dims_from=runs/quick/bc_expert/policy --dims=0,1,2

The policy directory is self-describing (task, episode length, normalization),
so nothing else is needed. Prints and writes `<policy>/evaluation_<split>.json`
(`evaluation_robot.json` on a robot, whose episodes are also written as an RLDS
dataset in `<policy>/robot_episodes/<date-time>`; run interactively, it asks the
operator for each episode's outcome). With `--dims_from`, the action dimensions `--dims` come from
that other saved policy of the same task (`clam_jax.rollout.mixing`), and the results go to
`evaluation_<split>_dims<dims>_from_<its method>.json` instead. `--max_steps` evaluates with another
episode length (e.g. longer: does a policy fail by going astray or by being too slow?); the results say
at which step each episode first succeeded (`success_steps`, in simulation).
"""
import json
import sys
import time
from pathlib import Path

from absl import app, flags, logging

from clam_jax.errors import ClamError, ConfigError
from clam_jax.rollout.chunking import EXECUTIONS

flags.DEFINE_string("policy", None, "Directory of a saved policy (e.g. <workdir>/clam/policy).", required=True)
flags.DEFINE_integer("episodes", 30, "Number of task variations to evaluate.")
flags.DEFINE_enum("split", "test", ["val", "test"], "Which fixed set of task variations to use.")
flags.DEFINE_integer("max_steps", None, "Policy steps per episode (default: the episode length the policy was "
                     "trained for); another length writes evaluation_<split>_steps<N>.json.")
flags.DEFINE_integer("num_workers", 0, "Environment worker processes (0: one per core).")
flags.DEFINE_integer("videos", 0, "Episodes to save as GIFs beside the results (renders with MUJOCO_GL).")
flags.DEFINE_string("robot", None, "Run on a robot instead: a clam_jax robot server (tcp://HOST:PORT) or "
                    "BridgeData's WidowX service (bridgedata://HOST:PORT).")
flags.DEFINE_float("rate_hz", 5.0, "Control rate on the robot (policy steps per second).")
flags.DEFINE_float("timeout_s", 5.0, "Give up on the robot when a reply takes longer than this.")
flags.DEFINE_string("camera", None, "The robot camera the policy sees (default: the robot's only camera).")
flags.DEFINE_bool("ask_outcome", None, "Ask the operator for each episode's outcome (default: when interactive).")
flags.DEFINE_enum("chunk_execution", None, list(EXECUTIONS), "How a policy that predicts chunks of "
                  "actions acts: temporal ensembling or each chunk executed whole (default: its training config's).")
flags.DEFINE_float("ensemble_m", None, "Temporal ensembling's weight m: exp(-m * i) for the i-th oldest "
                   "prediction (default: its training config's).")
flags.DEFINE_string("dims_from", None, "Another saved policy of the same task whose actions supply `--dims` "
                    "(a diagnostic of which part of the action limits the policy, clam_jax.rollout.mixing).")
flags.DEFINE_list("dims", None, "Action dimensions taken from `--dims_from`'s policy, e.g. 0,1,2.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from clam_jax.cli import use_headless_rendering

    use_headless_rendering()
    from clam_jax.rollout.saved_policy import load_policy

    try:
        act, spec = load_policy(FLAGS.policy, execution=FLAGS.chunk_execution, ensemble_m=FLAGS.ensemble_m)
        method, suffix = spec["method"], ""
        if FLAGS.dims_from or FLAGS.dims:
            act, other = mixed_actor(act, spec)
            method = f"{method} with dims {','.join(FLAGS.dims)} of {other['method']}"
            suffix = f"_dims{'-'.join(FLAGS.dims)}_from_{other['method']}"
        if FLAGS.max_steps is not None and FLAGS.max_steps != spec["max_steps"]:
            if FLAGS.max_steps < 1:
                raise ConfigError(f"--max_steps must be at least 1, got {FLAGS.max_steps}.")
            spec = {**spec, "max_steps": FLAGS.max_steps}
            suffix += f"_steps{FLAGS.max_steps}"
        result = on_robot(act, spec) if FLAGS.robot else in_simulation(act, spec)
    except ClamError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    result.update(task=spec["task"], method=method)
    where = "robot" if FLAGS.robot else FLAGS.split
    (Path(FLAGS.policy) / f"evaluation_{where}{suffix}.json").write_text(json.dumps(result, indent=2))
    print(f"{method} on {spec['task']}: success rate {result['success_rate']:.2f}, return "
          f"{sum(result['returns']) / len(result['returns']):.1f} over {result['num_episodes']} episodes "
          f"({FLAGS.robot or f'{FLAGS.split} variations'})")


def mixed_actor(act, spec: dict):
    """`act` with the action dimensions FLAGS.dims taken from the policy in FLAGS.dims_from; and its spec."""
    from clam_jax.rollout.mixing import MixedActor
    from clam_jax.rollout.saved_policy import load_policy

    if not (FLAGS.dims_from and FLAGS.dims):
        raise ConfigError("--dims_from and --dims go together: the other policy and the action dimensions it gives.")
    other, other_spec = load_policy(FLAGS.dims_from, execution=FLAGS.chunk_execution, ensemble_m=FLAGS.ensemble_m)
    if other_spec["task"] != spec["task"]:
        raise ConfigError(f"--dims_from's policy is for {other_spec['task']}, this one for {spec['task']}.")
    try:
        dims = [int(d) for d in FLAGS.dims]
    except ValueError:
        raise ConfigError(f"--dims must be whole numbers, e.g. 0,1,2; got {','.join(FLAGS.dims)}.") from None
    return MixedActor(act, other, dims, spec["action_dim"]), other_spec


def in_simulation(act, spec: dict) -> dict:
    from clam_jax.envs.tasks import task_options
    from clam_jax.rollout.evaluation import evaluate
    from clam_jax.rollout.videos import save_videos

    result = evaluate(act, spec["task"], num_episodes=FLAGS.episodes, split=FLAGS.split,
                      max_steps=spec["max_steps"], action_repeat=spec["action_repeat"],
                      num_workers=FLAGS.num_workers, videos=FLAGS.videos,
                      image_size=spec["image_size"] if spec.get("observation") == "image" else 0,
                      proprio_dims=spec.get("proprio_dims", 0), env_options=task_options(spec["config"]))
    frames = result.pop("frames", None)
    if frames is not None:
        save_videos(Path(FLAGS.policy) / f"videos_{FLAGS.split}", frames)
    return result


def on_robot(act, spec: dict) -> dict:
    """The evaluation on the robot at FLAGS.robot, on the same task variations as in simulation (a simulated
    robot resets to them; a real one is reset by the operator)."""
    import tensorflow_datasets as tfds

    from clam_jax.bridge.rollout import Pacer, ask_operator, connect, run_on_robot
    from clam_jax.data.episodes import write_episodes
    from clam_jax.data.statistics import dataset_statistics
    from clam_jax.rollout.evaluation import evaluation_seeds

    ask = sys.stdin.isatty() if FLAGS.ask_outcome is None else FLAGS.ask_outcome
    with connect(FLAGS.robot, timeout_s=FLAGS.timeout_s) as client:
        result, episodes = run_on_robot(act, client, spec, evaluation_seeds(FLAGS.split, FLAGS.episodes),
                                        pacer=Pacer(1.0 / FLAGS.rate_hz), camera=FLAGS.camera,
                                        operator=ask_operator if ask else None)
    tfds.disable_progress_bar()
    recorded = Path(FLAGS.policy) / "robot_episodes" / time.strftime("%Y%m%d-%H%M%S")
    write_episodes(recorded, episodes, dataset_statistics(episodes))
    return {**result, "episodes_dir": str(recorded)}


if __name__ == "__main__":
    app.run(main)
