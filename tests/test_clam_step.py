"""The unified stage-1 step on a learnable toy problem, and CLAM's relabelling."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clam_jax.data.windows import pad_episodes
from clam_jax.methods import clam
from clam_jax.models.lam import ActionDecoder, make_latent_action_model
from clam_jax.training.loop import make_multi_step
from clam_jax.training.optim import make_optimizer


def toy_episodes(rng, num_episodes, steps=20, obs_dim=6, act_dim=2):
    """Linear dynamics o_{t+1} = o_t + B a_t with random actions: the action is recoverable."""
    b = np.random.default_rng(123).normal(size=(act_dim, obs_dim))
    actions = rng.uniform(-1, 1, (num_episodes, steps + 1, act_dim)).astype(np.float32)
    obs = np.zeros((num_episodes, steps + 1, obs_dim), np.float32)
    obs[:, 0] = rng.normal(size=(num_episodes, obs_dim))
    for t in range(steps):
        obs[:, t + 1] = obs[:, t] + actions[:, t] @ b
    actions[:, -1] = 0
    return obs, actions


SMALL_TRANSFORMER = dict(embed_dim=32, num_heads=2, mlp_dim=64, num_layers=1, dropout=0.0)


def setup(decoder_every=2, beta=1.0, dtype="float32", kind="mlp", joint=True, codebook_size=0):
    rng = np.random.default_rng(0)
    unlabeled, _ = toy_episodes(rng, 64)
    labeled, labeled_actions = toy_episodes(rng, 16)
    lam = make_latent_action_model(kind, obs_dim=6, latent_dim=4, context=1, future=0, dtype=dtype,
                                   hidden=(64, 64), transformer=SMALL_TRANSFORMER, codebook_size=codebook_size)
    decoder = ActionDecoder(action_dim=2, embed_dim=16, hidden=(64,), dtype=dtype)
    lam_tx = make_optimizer(lr=1e-3, weight_decay=0.0, warmup=10, clip=1.0)
    dec_tx = make_optimizer(lr=1e-3, weight_decay=0.0, warmup=10, clip=1.0)
    state = clam.init_stage1(jax.random.key(0), lam, decoder, lam_tx, dec_tx)
    step = clam.make_stage1_step(lam, decoder, lam_tx, dec_tx, batch_size=64, labeled_batch_size=64,
                                 decoder_every=decoder_every, beta=beta, joint=joint)
    data = jax.device_put({"unlabeled": pad_episodes(unlabeled, 1, 0), "labeled": pad_episodes(labeled, 1, 0),
                           "labeled_actions": labeled_actions})
    return lam, decoder, state, step, data, labeled, labeled_actions


@pytest.mark.parametrize("kind,dtype", [("mlp", "float32"), ("mlp", "bfloat16"), ("transformer", "float32")])
def test_joint_step_lowers_reconstruction_and_decoder_losses_below_the_cheat_loss(kind, dtype):
    lam, decoder, state, step, data, _, _ = setup(dtype=dtype, kind=kind)
    multi_step = make_multi_step(step, 100)
    state, first = multi_step(state, data)
    for _ in range(14):
        state, last = multi_step(state, data)
    assert int(state.step) == 1500
    assert last["recon_loss"] < 0.2 * first["recon_loss"]
    assert last["decoder_loss"] < 0.3 * first["decoder_loss"]
    assert last["recon_loss"] < 0.2 * last["cheat_loss"]
    # Mixed precision computes in bfloat16 but keeps float32 parameters and optimizer states.
    assert {x.dtype for x in jax.tree.leaves((state.lam_params, state.decoder_opt_state))} <= {
        jnp.dtype("float32"), jnp.dtype("int32")}


def test_discrete_latents_learn_with_a_used_codebook():
    lam, decoder, state, step, data, _, _ = setup(codebook_size=32)
    multi_step = make_multi_step(step, 100)
    state, first = multi_step(state, data)
    for _ in range(9):
        state, last = multi_step(state, data)
    assert last["recon_loss"] < 0.5 * first["recon_loss"] and last["decoder_loss"] < first["decoder_loss"]
    assert last["vq_perplexity"] > 4 and 0 < last["vq_usage"] <= 1
    assert set(state.lam_params) == {"params", "vq"}


def test_decoder_updates_only_every_k_steps_and_its_gradient_reaches_the_idm():
    _, _, state, step, data, _, _ = setup(decoder_every=2, beta=1.0)
    jitted = jax.jit(step)
    state1, metrics0 = jitted(state, data)  # step 0: joint
    state2, metrics1 = jitted(state1, data)  # step 1: reconstruction only
    changed = lambda a, b: any(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.any(x != y)), a, b)))
    assert changed(state.decoder_params, state1.decoder_params)
    assert not changed(state1.decoder_params, state2.decoder_params)
    assert np.isfinite(metrics0["decoder_loss"]) and np.isnan(metrics1["decoder_loss"])
    # The same joint step with beta = 0 gives the LAM a different update: the decoder loss reaches the IDM.
    _, _, state_b0, step_b0, _, _, _ = setup(decoder_every=2, beta=0.0)
    lam_b0 = jax.jit(step_b0)(state_b0, data)[0].lam_params["params"]["idm_net"]
    assert changed(state1.lam_params["params"]["idm_net"], lam_b0)


def test_separate_training_leaves_the_decoder_alone_and_the_idm_to_reconstruction():
    _, _, state, step, data, _, _ = setup(joint=False)
    separate, metrics = jax.jit(step)(state, data)  # step 0, a decoder step when joint
    _, _, state_b0, step_b0, _, _, _ = setup(beta=0.0)
    joint_b0 = jax.jit(step_b0)(state_b0, data)[0]
    for a, b in zip(jax.tree.leaves(state.decoder_params), jax.tree.leaves(separate.decoder_params), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(separate.lam_params), jax.tree.leaves(joint_b0.lam_params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert np.isnan(metrics["decoder_loss"])


def test_relabel_matches_the_idm_on_every_window_and_decodes_true_actions():
    lam, decoder, state, step, data, labeled, actions = setup()
    multi_step = make_multi_step(step, 100)
    for _ in range(15):
        state, _ = multi_step(state, data)
    padded = pad_episodes(labeled, 1, 0)
    latents = clam.relabel(lam, state.lam_params, padded, batch_size=50)  # chunks of 2 episodes, last padded
    assert latents.shape == (16, 20, 4)
    window = padded[3:4, 7:10]
    np.testing.assert_allclose(latents[3, 7], lam.apply(state.lam_params, window, method=lam.idm)[0], atol=1e-5)
    error = clam.decoder_error(lam, decoder, state.lam_params, state.decoder_params, padded, actions, batch_size=50)
    assert error < 0.1 * np.var(actions[:, :-1])


def test_update_scanned_over_streamed_batches_equals_steps_sampling_on_the_device():
    from clam_jax.training.loop import make_multi_update

    lam, decoder, state, step, data, _, _ = setup()
    lam_tx = dec_tx = make_optimizer(lr=1e-3, weight_decay=0.0, warmup=10, clip=1.0)
    update = clam.make_stage1_update(lam, decoder, lam_tx, dec_tx, decoder_every=2, beta=1.0)
    # The batches the device-sampling step draws at steps 0..9, stacked into one streamed chunk.
    keys = [jax.random.fold_in(state.rng, i) for i in range(10)]
    batches = [clam.sample_stage1_batch(k, data, batch_size=64, labeled_batch_size=64, window=lam.window)
               for k in keys]
    chunk = jax.tree.map(lambda *x: jnp.stack(x), *batches)
    sampled, sampled_metrics = make_multi_step(step, 10, period=2)(jax.tree.map(jnp.copy, state), data)  # donated
    streamed, streamed_metrics = make_multi_update(update, period=2)(state, chunk)
    for x, y in zip(jax.tree.leaves(sampled.lam_params), jax.tree.leaves(streamed.lam_params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sampled_metrics["loss"], streamed_metrics["loss"], rtol=1e-6)


def test_decoder_period_fixed_when_tracing_equals_the_choice_made_at_run_time():
    _, _, state, step, data, _, _ = setup(decoder_every=2)
    per_step, per_step_metrics = make_multi_step(step, 10)(jax.tree.map(jnp.copy, state), data)  # lax.cond
    unrolled, unrolled_metrics = make_multi_step(step, 10, period=2)(jax.tree.map(jnp.copy, state), data)
    odd = jax.tree.map(jnp.copy, state)  # K = 5 is no multiple of the period: the run-time choice again
    for _ in range(2):
        odd, _ = make_multi_step(step, 5, period=2)(odd, data)
    for other in (unrolled, odd):
        assert int(other.step) == 10
        for x, y in zip(jax.tree.leaves((per_step.lam_params, per_step.decoder_params)),
                        jax.tree.leaves((other.lam_params, other.decoder_params)), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    for key in ("loss", "recon_loss", "decoder_loss"):
        np.testing.assert_allclose(per_step_metrics[key], unrolled_metrics[key], rtol=1e-5)
