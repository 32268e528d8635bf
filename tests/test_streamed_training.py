"""Stage 1 of the pipeline fed by the streaming input path, on datasets written to disk."""
import jax
import numpy as np

from clam_jax.collect import data_dir
from clam_jax.data.episodes import write_episodes
from clam_jax.data.statistics import Normalizer, dataset_statistics
from clam_jax.stages import Run, train_stage1
from clam_jax.training.sharding import make_mesh
from tests.test_episodes_io import make_episodes


def write_datasets(workdir):
    datasets = {}
    for i, name in enumerate(("unlabeled", "labeled", "expert")):
        episodes = make_episodes(n=3, steps=12, seed=i)
        write_episodes(data_dir(workdir) / name, episodes, dataset_statistics(episodes))
        datasets[name] = episodes
    return datasets


def test_streamed_stage1_resumes_where_it_stopped_and_matches_a_straight_run(tiny_config, tmp_path):
    config = tiny_config()
    config.lam.kind = "transformer"  # its dropout also checks that the step's randomness resumes exactly
    config.lam.transformer = dict(embed_dim=16, num_heads=2, mlp_dim=32, num_layers=1, dropout=0.1)
    config.train.input = "stream"
    config.train.stream_workers = 0
    config.stage1.steps = 40
    mesh = make_mesh()
    states = {}
    for run, stops in (("straight", (40,)), ("resumed", (20, 40))):
        datasets = write_datasets(tmp_path / run)
        normalizer = Normalizer.from_statistics(dataset_statistics(datasets["unlabeled"]))
        for steps in stops:  # the second call restores step 20's checkpoint and streams from chunk 2 on
            config.stage1.steps = steps
            [states[run]] = train_stage1([Run(config, tmp_path / run, datasets, normalizer)], mesh)
    assert int(states["straight"].step) == int(states["resumed"].step) == 40
    for a, b in zip(jax.tree.leaves(states["straight"].lam_params), jax.tree.leaves(states["resumed"].lam_params),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    metrics = (tmp_path / "straight" / "metrics.jsonl").read_text()
    assert '"input_wait_fraction"' in metrics and '"recon_loss"' in metrics
