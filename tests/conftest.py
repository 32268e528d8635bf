import warnings

import pytest

warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")


@pytest.fixture(scope="session")
def tiny_config():
    """The tiny preset, loaded as the CLI would load it."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "configs" / "metaworld.py"
    spec = importlib.util.spec_from_file_location("metaworld_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return lambda variant="tiny": module.get_config(variant)
