"""The optimizer's global-norm clipping (one reduction over all gradients on accelerators) against optax's."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from clam_jax.training.optim import clip_by_global_norm, global_norm, norm_of_concatenation

GRADS = {"a": jnp.arange(6.0).reshape(2, 3), "b": {"c": -jnp.ones(4), "d": jnp.array(2.5)}}


@pytest.mark.parametrize("norm", [global_norm,  # on CPU, the sum of the leaves' sums
                                  lambda tree: norm_of_concatenation(jax.tree.leaves(tree))])  # elsewhere
def test_global_norm_is_the_norm_of_all_leaves(norm):
    np.testing.assert_allclose(norm(GRADS), optax.global_norm(GRADS), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(norm)(GRADS), np.sqrt(55 + 4 + 6.25), rtol=1e-6)


@pytest.mark.parametrize("max_norm", [1.0, 100.0])  # clipped, and left as it is
def test_clipping_equals_optax(max_norm):
    ours, _ = clip_by_global_norm(max_norm).update(GRADS, optax.EmptyState())
    theirs, _ = optax.clip_by_global_norm(max_norm).update(GRADS, optax.EmptyState())
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), ours, theirs)
    assert np.isclose(global_norm(ours), min(max_norm, float(global_norm(GRADS))), rtol=1e-6)
