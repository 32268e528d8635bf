"""Evaluates a saved policy in simulation.

  python -m clam_jax.evaluate --policy=runs/quick/clam/policy --episodes=30

The policy directory is self-describing (task, episode length, normalization),
so nothing else is needed. Prints and writes `<policy>/evaluation_<split>.json`.
"""
import json
import sys
from pathlib import Path

from absl import app, flags, logging

from clam_jax.errors import ClamError

flags.DEFINE_string("policy", None, "Directory of a saved policy (e.g. <workdir>/clam/policy).", required=True)
flags.DEFINE_integer("episodes", 30, "Number of task variations to evaluate.")
flags.DEFINE_enum("split", "test", ["val", "test"], "Which fixed set of task variations to use.")
flags.DEFINE_integer("num_workers", 0, "Environment worker processes (0: one per core).")
flags.DEFINE_integer("videos", 0, "Episodes to save as GIFs beside the results (renders with MUJOCO_GL).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from clam_jax.cli import use_headless_rendering

    use_headless_rendering()
    from clam_jax.rollout.evaluation import evaluate
    from clam_jax.rollout.saved_policy import load_policy
    from clam_jax.rollout.videos import save_videos

    try:
        act, spec = load_policy(FLAGS.policy)
    except ClamError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    result = evaluate(act, spec["task"], num_episodes=FLAGS.episodes, split=FLAGS.split,
                      max_steps=spec["max_steps"], action_repeat=spec["action_repeat"],
                      num_workers=FLAGS.num_workers, videos=FLAGS.videos,
                      image_size=spec["image_size"] if spec.get("observation") == "image" else 0,
                      proprio_dims=spec.get("proprio_dims", 0))
    frames = result.pop("frames", None)
    if frames is not None:
        save_videos(Path(FLAGS.policy) / f"videos_{FLAGS.split}", frames)
    result.update(task=spec["task"], method=spec["method"])
    (Path(FLAGS.policy) / f"evaluation_{FLAGS.split}.json").write_text(json.dumps(result, indent=2))
    print(f"{spec['method']} on {spec['task']}: success rate {result['success_rate']:.2f}, return "
          f"{sum(result['returns']) / len(result['returns']):.1f} over {result['num_episodes']} episodes "
          f"({FLAGS.split} variations)")


if __name__ == "__main__":
    app.run(main)
