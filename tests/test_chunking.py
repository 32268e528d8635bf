"""Action chunking: chunked targets, the masked chunk loss, temporal ensembling and open-loop execution; actors
mixed from two policies."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clam_jax.data.statistics import Normalizer
from clam_jax.errors import ConfigError
from clam_jax.methods.policy import init_policy, make_policy_step
from clam_jax.models.lam import ActionDecoder, MLPPolicy
from clam_jax.rollout.chunking import ChunkedActor, chunk_targets
from clam_jax.rollout.mixing import MixedActor
from clam_jax.rollout.saved_policy import load_policy, make_act_fn, save_policy
from clam_jax.training.loop import make_multi_step
from clam_jax.training.optim import make_optimizer


def test_chunks_start_at_each_step_and_mask_the_steps_past_the_episode_end():
    targets = np.arange(2 * 4 * 1, dtype=np.float32).reshape(2, 4, 1)  # episode e, step t: 4e + t
    chunked = chunk_targets(targets, 3)
    assert chunked["targets"].shape == (8, 3, 1) and chunked["mask"].shape == (8, 3)
    np.testing.assert_array_equal(chunked["targets"][1, :, 0], [1, 2, 3])  # episode 0 from t = 1
    np.testing.assert_array_equal(chunked["targets"][6, :, 0], [6, 7, 0])  # episode 1 from t = 2: one padded
    np.testing.assert_array_equal(chunked["mask"][6], [1, 1, 0])
    np.testing.assert_array_equal(chunked["mask"][7], [1, 0, 0])  # never the next episode's steps
    single = chunk_targets(targets, 1)
    np.testing.assert_array_equal(single["targets"][:, 0], targets.reshape(-1, 1))
    assert single["mask"].all()


def test_chunk_policy_learns_future_actions_and_ignores_masked_steps():
    """Actions a_t = sin(t + phase); a policy seeing (sin, cos) of t + phase can predict the next 3 exactly."""
    rng = np.random.default_rng(0)
    phases = rng.uniform(0, 2 * np.pi, 64)
    t = np.arange(10)[None] + phases[:, None]
    inputs = np.stack([np.sin(t), np.cos(t)], -1).reshape(-1, 2).astype(np.float32)
    chunked = chunk_targets(np.sin(t)[..., None].astype(np.float32), 3)
    model = MLPPolicy(out_dim=3, hidden=(64, 64))
    tx = make_optimizer(lr=3e-3, weight_decay=0.0, warmup=10, clip=1.0)
    step = make_policy_step(model, tx, batch_size=64)

    def train(targets):
        state = init_policy(jax.random.key(0), model, tx, inputs[:1])
        state, first = make_multi_step(step, 100)(state, {"inputs": inputs, **targets})
        for _ in range(5):
            state, last = make_multi_step(step, 100)(state, {"inputs": inputs, **targets})
        return state, first, last

    state, first, last = train(chunked)
    assert last["loss"] < 0.02 * first["loss"]
    garbage = np.where(chunked["mask"][..., None] > 0, chunked["targets"], 1e3)  # what the mask drops
    masked, _, _ = train({**chunked, "targets": garbage.astype(np.float32)})
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(masked.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def counting_chunks(chunk):
    """act_chunk for one episode whose query number q (from 0) predicts 10 q + i for step i of its chunk."""
    calls = []

    def act_chunk(observations):
        calls.append(observations)
        q = len(calls) - 1
        return (10.0 * q + np.arange(chunk, dtype=np.float32))[None, :, None]

    return act_chunk, calls


def test_temporal_ensembling_averages_every_prediction_for_the_step_oldest_weighing_most():
    act_chunk, calls = counting_chunks(3)
    actor = ChunkedActor(act_chunk, 3, execution="ensemble", ensemble_m=0.5)
    actions = [float(actor(np.zeros((1, 2)))[0, 0]) for _ in range(4)]
    w = np.exp(-0.5 * np.arange(3))
    assert actions[0] == 0.0  # the first query's own prediction for t = 0
    assert actions[1] == pytest.approx((w[0] * 1 + w[1] * 10) / w[:2].sum())  # queries 0 and 1 predict t = 1
    assert actions[2] == pytest.approx((w[0] * 2 + w[1] * 11 + w[2] * 20) / w.sum())
    assert actions[3] == pytest.approx((w[0] * 12 + w[1] * 21 + w[2] * 30) / w.sum())  # query 0 is too old
    assert len(calls) == 4
    actor.reset()
    assert float(actor(np.zeros((1, 2)))[0, 0]) == 40.0  # a new episode forgets the last one's predictions
    uniform = ChunkedActor(counting_chunks(3)[0], 3, ensemble_m=0.0)
    assert [float(uniform(np.zeros((1, 2)))[0, 0]) for _ in range(3)][2] == pytest.approx((2 + 11 + 20) / 3)


def test_open_loop_execution_queries_once_per_chunk():
    act_chunk, calls = counting_chunks(3)
    actor = ChunkedActor(act_chunk, 3, execution="open_loop")
    actions = [float(actor(np.zeros((1, 2)))[0, 0]) for _ in range(7)]
    assert actions == [0, 1, 2, 10, 11, 12, 20] and len(calls) == 3


def test_unknown_execution_is_refused():
    with pytest.raises(ConfigError, match="Unknown chunk execution 'receding'"):
        ChunkedActor(counting_chunks(2)[0], 2, execution="receding")
    with pytest.raises(ConfigError, match="m must be >= 0"):
        ChunkedActor(counting_chunks(2)[0], 2, ensemble_m=-1.0)


def test_mixed_actor_takes_the_chosen_dimensions_from_the_other_policy_and_resets_both():
    def open_loop_counter(offset):
        act_chunk = counting_chunks(2)[0]
        return ChunkedActor(lambda obs: np.repeat(act_chunk(obs), 4, axis=-1) + offset, 2, execution="open_loop")

    base, other = open_loop_counter(0.0), open_loop_counter(0.5)
    mixed = MixedActor(base, other, [3, 0], action_dim=4)
    np.testing.assert_array_equal([mixed(np.zeros((1, 2)))[0] for _ in range(3)],
                                  [[0.5, 0, 0, 0.5], [1.5, 1, 1, 1.5], [10.5, 10, 10, 10.5]])
    mixed.reset()
    np.testing.assert_array_equal(mixed(np.zeros((1, 2)))[0], [20.5, 20, 20, 20.5])  # both start a new chunk
    for dims in ([], [4], [-1]):
        with pytest.raises(ConfigError, match="must be in 0 .. 3"):
            MixedActor(base, other, dims, action_dim=4)


def test_saved_latent_chunk_policy_decodes_every_step_and_acts_as_its_config_says(tmp_path):
    """A CLAM policy predicting 4 latents of 3 dims: the decoder maps each; load_policy ensembles or runs open
    loop as its config, or the caller, says."""
    policy, decoder = MLPPolicy(out_dim=4 * 3, hidden=(8,)), ActionDecoder(action_dim=2, embed_dim=4, hidden=(8,))
    obs = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    params = {"policy": policy.init(jax.random.key(0), obs[:1]), "decoder": decoder.init(jax.random.key(1),
                                                                                         jnp.zeros((1, 3)))}
    spec = {"normalizer": Normalizer(np.zeros(6, np.float32), np.ones(6, np.float32)).to_dict(),
            "policy": {"out_dim": 12, "hidden": [8]}, "chunk": 4,
            "decoder": {"action_dim": 2, "embed_dim": 4, "hidden": [8]},
            "config": {"eval": {"chunk_execution": "open_loop", "ensemble_m": 0.5}}}
    chunks = make_act_fn(spec, params)(obs)
    latents = policy.apply(params["policy"], obs).reshape(5, 4, 3)
    np.testing.assert_allclose(chunks, decoder.apply(params["decoder"], latents), rtol=1e-5, atol=1e-6)
    save_policy(tmp_path / "policy", params, spec)
    open_loop, _ = load_policy(tmp_path / "policy")
    ensemble, _ = load_policy(tmp_path / "policy", execution="ensemble", ensemble_m=0.0)
    assert [open_loop(obs).shape for _ in range(2)] == [(5, 2)] * 2
    np.testing.assert_allclose(open_loop(obs), chunks[:, 2], rtol=1e-5, atol=1e-6)
    ensemble(obs)
    np.testing.assert_allclose(ensemble(obs), (chunks[:, 1] + chunks[:, 0]) / 2, rtol=1e-5, atol=1e-6)
