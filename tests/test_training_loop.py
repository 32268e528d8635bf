"""Checkpoint round trips, resumption, and the non-finite loss guard of the training loop."""
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from clam_jax.errors import DataError, NonFiniteLossError
from clam_jax.methods.policy import init_policy, make_policy_step
from clam_jax.models.lam import MLPPolicy
from clam_jax.training.checkpoints import TrainStateCheckpoints
from clam_jax.training.loop import device_inputs, loop_compiler_options, make_multi_step, make_multi_update, train
from clam_jax.training.optim import make_optimizer
from clam_jax.training.sharding import make_mesh


def regression_problem():
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(256, 5)).astype(np.float32)
    targets = np.tanh(inputs @ rng.normal(size=(5, 2))).astype(np.float32)
    model = MLPPolicy(out_dim=2, hidden=(32,), squash=True)
    tx = make_optimizer(lr=1e-2, weight_decay=0.0, warmup=5, clip=1.0)
    state = init_policy(jax.random.key(0), model, tx, jnp.zeros((1, 5)))
    step = make_policy_step(model, tx, batch_size=32)
    return state, step, {"inputs": inputs, "targets": targets}


def run(state, step, data, num_steps, checkpoints=None):
    return train(state, make_multi_step(step, 10), device_inputs(data), num_steps=num_steps,
                 steps_per_dispatch=10, log_every=20, checkpoint_every=20, checkpoints=checkpoints)


def as_numpy(x):
    return np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)


def assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(as_numpy(x), as_numpy(y))


def test_policy_loss_falls():
    state, step, data = regression_problem()
    multi_step = make_multi_step(step, 50)
    state, first = multi_step(state, data)
    for _ in range(5):
        state, last = multi_step(state, data)
    assert last["loss"] < 0.3 * first["loss"]


def test_the_training_programs_compile_with_the_xla_options_of_their_devices_platform():
    assert loop_compiler_options(make_mesh()) == {}  # a CPU
    state, step, data = regression_problem()
    bogus = {"xla_gpu_command_buffer_scheduling_mode": "BOGUS"}
    with pytest.raises(jax.errors.JaxRuntimeError, match="not a valid enum value"):
        make_multi_step(step, 10, compiler_options=bogus)(state, data)
    with pytest.raises(jax.errors.JaxRuntimeError, match="not a valid enum value"):  # the step as an update
        make_multi_update(step, compiler_options=bogus)(state, jax.tree.map(lambda x: x[None], data))


def test_checkpoint_round_trip(tmp_path):
    state, step, data = regression_problem()
    state = run(state, step, data, 20)
    checkpoints = TrainStateCheckpoints(tmp_path / "ckpt")
    checkpoints.save(20, state)
    fresh, _, _ = regression_problem()
    restored = checkpoints.restore(fresh)
    assert checkpoints.latest_step() == 20 and int(restored.step) == 20
    assert_same(restored, state)


def test_resumed_training_equals_uninterrupted_training(tmp_path):
    state, step, data = regression_problem()
    straight = run(state, step, data, 60)
    state, step, data = regression_problem()
    run(state, step, data, 40, TrainStateCheckpoints(tmp_path / "ckpt"))  # "killed" after step 40
    state, step, data = regression_problem()
    resumed = run(state, step, data, 60, TrainStateCheckpoints(tmp_path / "ckpt"))
    assert int(resumed.step) == 60
    assert_same(resumed.params, straight.params)


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    state, step, data = regression_problem()
    checkpoints = TrainStateCheckpoints(tmp_path / "ckpt")
    good = run(state, step, data, 20, checkpoints)
    poisoned = {"inputs": data["inputs"], "targets": np.full_like(data["targets"], np.nan)}
    with pytest.raises(NonFiniteLossError, match="last good checkpoint is kept"):
        run(good, step, poisoned, 60, checkpoints)
    assert checkpoints.latest_step() == 20
    assert_same(checkpoints.restore(good).params, good.params)
    assert jnp.isfinite(jax.tree.leaves(checkpoints.restore(good).params)[0]).all()


def test_seeds_trained_together_equal_seeds_trained_apart():
    from clam_jax.training.loop import over_seeds, scan_steps

    _, step, data = regression_problem()
    model = MLPPolicy(out_dim=2, hidden=(32,), squash=True)
    tx = make_optimizer(lr=1e-2, weight_decay=0.0, warmup=5, clip=1.0)
    keys = jax.random.split(jax.random.key(0), 3)
    states = jax.vmap(lambda k: init_policy(k, model, tx, jnp.zeros((1, 5))))(keys)
    together, metrics = jax.jit(over_seeds(lambda s, d: scan_steps(step, s, d, length=20)))(states, data)
    assert metrics["loss"].shape == (3,)
    for i, key in enumerate(keys):
        apart, _ = make_multi_step(step, 20)(init_policy(key, model, tx, jnp.zeros((1, 5))), data)
        for a, b in zip(jax.tree.leaves(apart.params), jax.tree.leaves(together.params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b)[i], rtol=1e-5, atol=1e-6)


def test_seeds_with_their_own_data_trained_together_write_their_own_checkpoints_and_metrics(tmp_path):
    """Two runs with different data in one program (a seed axis on state and data) equal the runs trained
    apart, and each seed's checkpoints and metrics land in its own run, from where training resumes."""
    import json

    from clam_jax.training.metrics import MetricWriter
    from clam_jax.training.seeds import SeedCheckpoints, SeedMetricWriters, stack

    _, step, data = regression_problem()
    other = {"inputs": data["inputs"][::-1] * 2.0, "targets": data["targets"][::-1]}
    model = MLPPolicy(out_dim=2, hidden=(32,), squash=True)
    tx = make_optimizer(lr=1e-2, weight_decay=0.0, warmup=5, clip=1.0)
    keys = [jax.random.key(3), jax.random.key(4)]
    states = jax.vmap(lambda k: init_policy(k, model, tx, jnp.zeros((1, 5))))(jnp.stack(keys))

    def train_together(num_steps, states):
        checkpoints = SeedCheckpoints([TrainStateCheckpoints(tmp_path / f"seed{i}" / "ckpt") for i in range(2)])
        writers = SeedMetricWriters([MetricWriter(tmp_path / f"seed{i}", "policy") for i in range(2)])
        try:
            return train(states, make_multi_step(step, 10, seeds=2, data_per_seed=True),
                         device_inputs(stack([data, other])), num_steps=num_steps, steps_per_dispatch=10,
                         log_every=20, checkpoint_every=20, checkpoints=checkpoints, writer=writers)
        finally:
            checkpoints.close()
            writers.close()

    train_together(20, jax.tree.map(jnp.copy, states))  # donates its copy
    together = train_together(40, states)  # resumes both seeds from step 20
    assert together.step.tolist() == [40, 40]
    for i, (key, seed_data) in enumerate(zip(keys, (data, other))):
        apart = run(init_policy(key, model, tx, jnp.zeros((1, 5))), step, seed_data, 40)
        for a, b in zip(jax.tree.leaves(apart.params), jax.tree.leaves(together.params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b)[i], rtol=1e-5, atol=1e-6)
        restored = TrainStateCheckpoints(tmp_path / f"seed{i}" / "ckpt").restore(apart)
        assert int(restored.step) == 40
        for a, b in zip(jax.tree.leaves(apart.params), jax.tree.leaves(restored.params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        logged = [json.loads(line) for line in (tmp_path / f"seed{i}" / "metrics.jsonl").read_text().splitlines()]
        assert [m["step"] for m in logged] == [20, 40] and all(isinstance(m["loss"], float) for m in logged)
    losses = [[json.loads(line)["loss"] for line in (tmp_path / f"seed{i}" / "metrics.jsonl").read_text()
               .splitlines()] for i in range(2)]
    assert losses[0] != losses[1]


def test_fine_tuning_starts_from_the_pretrained_hidden_layers_with_a_new_output_layer():
    from clam_jax.methods.policy import with_hidden_layers_of

    latent_policy, action_policy = MLPPolicy(out_dim=16, hidden=(32, 32)), MLPPolicy(out_dim=4, hidden=(32, 32),
                                                                                       squash=True)
    obs = jnp.ones((1, 5))
    pretrained = latent_policy.init(jax.random.key(0), obs)
    head = action_policy.init(jax.random.key(1), obs)
    params = with_hidden_layers_of(head, pretrained)
    layers = params["params"]["MLP_0"]
    assert set(layers) == {"Dense_0", "Dense_1", "Dense_2"}
    for name in ("Dense_0", "Dense_1"):
        assert_same(layers[name], pretrained["params"]["MLP_0"][name])
    assert_same(layers["Dense_2"], head["params"]["MLP_0"]["Dense_2"])
    assert action_policy.apply(params, obs).shape == (1, 4)


def test_logged_metrics_average_every_dispatch_since_the_last_log():
    """With fewer steps per dispatch than steps per log, the log covers the whole interval; a metric only
    some steps compute (as the decoder loss every K-th step) is averaged over those steps."""

    @flax.struct.dataclass
    class Counter:
        step: jax.Array

    def step(state, data):
        n = state.step.astype(jnp.float32)
        return Counter(state.step + 1), {"loss": n, "every_other": jnp.where(state.step % 2 == 0, n, jnp.nan)}

    logged = []

    class Recorder:
        def write(self, step, metrics):
            logged.append((step, metrics))

    train(Counter(jnp.zeros((), jnp.int32)), make_multi_step(step, 1), device_inputs(None), num_steps=8,
          steps_per_dispatch=1, log_every=4, checkpoint_every=4, writer=Recorder())
    (first_step, first), (second_step, second) = logged
    assert (first_step, second_step) == (4, 8)
    assert first["loss"] == 1.5 and first["every_other"] == 1.0  # steps 0..3; even steps 0, 2
    assert second["loss"] == 5.5 and second["every_other"] == 5.0


def test_restoring_a_checkpoint_of_another_layout_says_so(tmp_path):
    adamw = make_optimizer(lr=1e-2, weight_decay=0.0, warmup=5, clip=1.0)
    policy_state = lambda hidden, tx=adamw: init_policy(
        jax.random.key(0), MLPPolicy(out_dim=2, hidden=hidden, squash=True), tx, jnp.zeros((1, 5)))
    TrainStateCheckpoints(tmp_path / "ckpt").save(0, policy_state((32,)))
    for other, differs in ((policy_state((64,)), r"Dense_0/bias: \(32,\) in the checkpoint, \(64,\) here"),
                           (policy_state((32,), optax.sgd(1e-2)), r"opt_state/.*: \(\) in the checkpoint, absent")):
        with pytest.raises(DataError, match="does not fit this run's train state .*" + differs):
            TrainStateCheckpoints(tmp_path / "ckpt").restore(other)
    assert int(TrainStateCheckpoints(tmp_path / "ckpt").restore(policy_state((32,))).step) == 0
