"""Flags shared by the command-line entry points, config files, and error handling."""
import importlib.util
import os
import sys

from absl import flags, logging
from ml_collections import config_flags

from clam_jax.errors import ClamError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/metaworld.py:quick.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for datasets, checkpoints, metrics and results.")
flags.DEFINE_bool("distributed", False, "Join a multi-process run with jax.distributed.initialize(); on SLURM "
                  "and TPU pods the topology comes from the environment, else give the three flags below.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (with --distributed).")
flags.DEFINE_integer("num_processes", None, "Number of processes (with --distributed).")
flags.DEFINE_integer("process_id", None, "This process's index (with --distributed).")


def load_config(path, variant: str = ""):
    """`get_config(variant)` of the config file at `path`, as `--config=path:variant` loads it."""
    spec = importlib.util.spec_from_file_location("clam_jax_config_file", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def use_headless_rendering() -> None:
    """Renders MuJoCo frames without a display (EGL) unless the user chose a backend with MUJOCO_GL; call it
    before anything imports mujoco."""
    os.environ.setdefault("MUJOCO_GL", "egl")


def run_cli(fn):
    """Runs `fn`, turning a ClamError into one line on stderr and exit status 2."""
    if FLAGS.config is None or FLAGS.workdir is None:
        sys.exit("error: --config and --workdir are required, e.g. "
                 "--config=configs/metaworld.py:quick --workdir=runs/quick")
    if FLAGS.distributed:
        from clam_jax.training.distributed import initialize

        initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    logging.set_verbosity(logging.WARNING)
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
    try:
        return fn()
    except ClamError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
