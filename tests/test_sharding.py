"""Data parallelism on 8 fake CPU devices matches one device; scanned steps match single steps."""
import functools

import jax
import numpy as np
import pytest

from clam_jax.errors import ConfigError
from clam_jax.methods import clam
from clam_jax.training.loop import make_multi_step
from clam_jax.training.sharding import (batch_split, check_batch_divisible, init_replicated, make_mesh,
                                        put_replicated)
from tests.test_clam_step import setup


def sharded_run(devices, num_steps=20):
    mesh = make_mesh(devices)
    lam, decoder, _, _, data, _, _ = setup()
    from clam_jax.training.optim import make_optimizer

    lam_tx = make_optimizer(lr=1e-3, weight_decay=0.0, warmup=10, clip=1.0)
    dec_tx = make_optimizer(lr=1e-3, weight_decay=0.0, warmup=10, clip=1.0)
    init = functools.partial(clam.init_stage1, lam=lam, decoder=decoder, lam_tx=lam_tx, decoder_tx=dec_tx)
    state = init_replicated(init, mesh, jax.random.key(0))
    step = clam.make_stage1_step(lam, decoder, lam_tx, dec_tx, batch_size=64, labeled_batch_size=64,
                                 decoder_every=2, beta=1.0, batch_sharding=batch_split(mesh))
    data = put_replicated(jax.device_get(data), mesh)
    state, metrics = make_multi_step(step, num_steps)(state, data)
    return state, metrics, jax.jit(step).lower(state, data).compile().as_text()


def test_eight_devices_match_one_device():
    assert jax.device_count() == 8
    one, metrics_one, _ = sharded_run(jax.devices()[:1])
    eight, metrics_eight, hlo = sharded_run(jax.devices())
    assert "all-reduce" in hlo  # gradients really are reduced across the data axis
    assert len(eight.lam_params["params"]["idm_net"]["Dense_0"]["kernel"].sharding.device_set) == 8
    for key in ("loss", "recon_loss", "decoder_loss"):
        np.testing.assert_allclose(metrics_eight[key], metrics_one[key], rtol=1e-4)
    for a, b in zip(jax.tree.leaves(eight.lam_params), jax.tree.leaves(one.lam_params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-5)


def test_scanned_steps_equal_steps_dispatched_one_by_one():
    _, _, state, step, data, _, _ = setup()
    scanned, _ = make_multi_step(step, 10)(jax.tree.map(lambda x: x.copy(), state), data)  # donated
    single = jax.jit(step)
    for _ in range(10):
        state, _ = single(state, data)
    for a, b in zip(jax.tree.leaves(scanned.lam_params), jax.tree.leaves(state.lam_params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_batch_must_divide_over_the_devices():
    with pytest.raises(ConfigError, match="multiple of the 8 devices"):
        check_batch_divisible(60, make_mesh(), "config.stage1.batch_size")
