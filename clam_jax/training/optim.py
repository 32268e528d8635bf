"""AdamW with linear warmup and global-norm clipping (paper Appendix D)."""
import jax.numpy as jnp
import optax


def warmup_schedule(lr: float, warmup: int) -> optax.Schedule:
    """lr * (n + 1) / warmup for update n < warmup, then constant: the first update is not wasted."""
    return lambda count: lr * jnp.minimum(1.0, (count + 1) / max(warmup, 1))


def make_optimizer(*, lr: float, weight_decay: float, warmup: int, clip: float) -> optax.GradientTransformation:
    schedule = warmup_schedule(lr, warmup)
    return optax.chain(
        optax.clip_by_global_norm(clip),
        optax.adamw(schedule, eps=1e-5, weight_decay=weight_decay),
    )
