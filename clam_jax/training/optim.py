"""AdamW with linear warmup and global-norm clipping (paper Appendix D)."""
import jax
import jax.numpy as jnp
import optax


def norm_of_concatenation(leaves: list[jax.Array]) -> jax.Array:
    return jnp.linalg.norm(jnp.concatenate([jnp.ravel(x) for x in leaves]))


def global_norm(tree) -> jax.Array:
    """The l2 norm of all leaves. On accelerators, one reduction over their concatenation, which XLA fuses
    into a single kernel instead of one per leaf; on CPU, where XLA writes the concatenation out (all the
    gradients copied, on the step's critical path), optax's sum of the leaves' sums of squares."""
    return jax.lax.platform_dependent(cpu=lambda: optax.tree.norm(tree),
                                      default=lambda: norm_of_concatenation(jax.tree.leaves(tree)))


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """`optax.clip_by_global_norm` over `global_norm`: the same updates with one reduction on accelerators,
    which XLA also shares with a logged `global_norm` of the same gradients."""

    def update(updates, state, params=None):
        del params
        scale = jnp.minimum(1.0, max_norm / jnp.maximum(global_norm(updates), max_norm))
        return jax.tree.map(lambda g: g * scale.astype(g.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def warmup_schedule(lr: float, warmup: int) -> optax.Schedule:
    """lr * (n + 1) / warmup for update n < warmup, then constant: the first update is not wasted."""
    return lambda count: lr * jnp.minimum(1.0, (count + 1) / max(warmup, 1))


def make_optimizer(*, lr: float, weight_decay: float, warmup: int, clip: float) -> optax.GradientTransformation:
    schedule = warmup_schedule(lr, warmup)
    return optax.chain(
        clip_by_global_norm(clip),
        optax.adamw(schedule, eps=1e-5, weight_decay=weight_decay),
    )
