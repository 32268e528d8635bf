"""Stage-1 throughput sweeps for `python -m clam_jax.benchmark --config=configs/benchmark.py:<variant>`.

The models are the paper's state LAMs at full size, as in ../shared/bench/torch_ref.py:
MLP-CLAM (Table 11: IDM/FDM 1024x2, decoder 512 + 1024x3, latent 16, 3-frame window)
and transformer CLAM (Table 12: 3+3 layers, d 256, 4 heads, ff 2048, dropout 0.1).
Data: in-memory synthetic episodes of the reference's shape (1000 unlabeled and 50
labeled, 100 steps, 39-D states), decoder step every 2 updates.

Variants:
  cpu   (default) the sweep for a 2-core CPU: the reference batch sizes and 4x them, K in {1, 10, 100}.
  gpu   K up to 1000, also with command buffers in XLA's order, bf16 at the reference batch and at larger ones, seed
        counts up to 32: one accelerator.
  smoke one tiny measurement, for the test suite.
"""
import ml_collections


# The training programs run the kernels in XLA's command buffers (CUDA graphs) in the order of their data
# dependencies alone (`clam_jax.training.loop.LOOP_COMPILER_OPTIONS`). For comparison, XLA's default: the order
# its latency-hiding scheduler chose.
LHS_ORDER = {"xla_gpu_command_buffer_scheduling_mode": "LHS"}


def measurement(model, batch, steps_per_dispatch, seeds=1, compute_dtype="float32", compiler_options=None):
    """`compiler_options`: XLA options for this program's compilation (as `XLA_FLAGS`' without the dashes)."""
    return dict(model=model, batch=batch, steps_per_dispatch=steps_per_dispatch, seeds=seeds,
                compute_dtype=compute_dtype, compiler_options=compiler_options or {})


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.variant = variant or "cpu"
    c.obs_dim, c.action_dim, c.latent_dim = 39, 4, 16
    c.unlabeled_episodes, c.labeled_episodes, c.episode_steps = 1000, 50, 100
    c.decoder_every = 2
    c.min_seconds = 5.0  # each measurement runs whole dispatches for at least this long after warm-up
    c.time_to_steps = 0  # > 0: also time a run of this many steps of the first transformer measurement,
    c.time_to_steps_budget_s = 150.0  # or of the steps that fit in this time, extrapolated
    if c.variant == "cpu":
        c.measurements = [measurement("mlp", 128, k) for k in (1, 100)] + [
            measurement("transformer", 64, k) for k in (1, 100)] + [
            measurement("mlp", 128, 100, seeds=4), measurement("mlp", 128, 100, compute_dtype="bfloat16"),
            measurement("mlp", 512, 100), measurement("transformer", 256, 10)]
    elif c.variant == "gpu":
        c.min_seconds = 2.0
        c.time_to_steps = 500_000
        c.time_to_steps_budget_s = 60.0
        c.measurements = [  # most wanted first: a device run may be cut short
            measurement("transformer", 64, 1000), measurement("transformer", 64, 1000, compiler_options=LHS_ORDER),
            measurement("transformer", 64, 1000, compute_dtype="bfloat16"), measurement("mlp", 128, 1000),
            measurement("transformer", 64, 1), measurement("mlp", 128, 1),
            measurement("transformer", 64, 1000, seeds=16), measurement("mlp", 128, 1000, seeds=32),
            measurement("transformer", 4096, 100, compute_dtype="bfloat16"),
            measurement("mlp", 8192, 100, compute_dtype="bfloat16")]
    elif c.variant == "smoke":
        c.unlabeled_episodes, c.labeled_episodes, c.episode_steps = 8, 4, 10
        c.min_seconds = 0.0
        c.measurements = [measurement("mlp", 8, 4, seeds=2)]
    else:
        raise ValueError(f"Unknown variant {variant!r}; use one of: cpu (default), gpu, smoke.")
    return c
