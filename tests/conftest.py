import os
import warnings

# Eight fake CPU devices, set before JAX is imported, so sharded code is tested for real
# (subprocesses started by the tests inherit it).
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
# Frames are rendered headless, as the CLIs do.
os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402

warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")


@pytest.fixture(scope="session")
def tiny_config():
    """The tiny preset, loaded as the CLI would load it."""
    from pathlib import Path

    from clam_jax.cli import load_config

    path = Path(__file__).parents[1] / "configs" / "metaworld.py"
    return lambda variant="tiny": load_config(path, variant)
