"""Vector quantization: straight-through gradients, EMA codebook updates, LAPO's codebook x token split."""
import jax
import jax.numpy as jnp
import numpy as np

from clam_jax.models.quantizers import VectorQuantizer


def test_output_is_the_nearest_codeword_and_the_gradient_passes_straight_through():
    vq = VectorQuantizer(codebook_size=8)
    z = jax.random.normal(jax.random.key(0), (16, 3)) * 0.1
    variables = vq.init(jax.random.key(1), z)
    [codebook] = variables["vq"]["codebook"]
    out = vq.apply(variables, z)
    nearest = codebook[jnp.argmin(jnp.sum((z[:, None] - codebook[None]) ** 2, -1), -1)]
    np.testing.assert_allclose(out, nearest, atol=1e-6)
    weights = jax.random.normal(jax.random.key(2), z.shape)
    grad = jax.grad(lambda z: jnp.sum(vq.apply(variables, z) * weights))(z)
    np.testing.assert_allclose(grad, weights, atol=1e-6)  # identity through the quantizer
    # The commitment loss pulls z towards its codeword.
    (_, losses) = vq.apply(variables, z, mutable=["losses"])
    commitment = float(losses["losses"]["vq_commitment"][0])
    np.testing.assert_allclose(commitment, vq.commitment * float(jnp.mean((z - nearest) ** 2)), rtol=1e-5)


def test_a_latent_is_cut_into_tokens_each_quantized_by_its_own_codebook():
    vq = VectorQuantizer(codebook_size=5, num_codebooks=2, tokens=3)
    z = jax.random.normal(jax.random.key(0), (4, 12)) * 0.1  # 2 codebooks x 3 tokens x 2 dims
    variables = vq.init(jax.random.key(1), z)
    codebooks = variables["vq"]["codebook"]
    assert codebooks.shape == (2, 5, 2)
    out = np.asarray(vq.apply(variables, z)).reshape(4, 2, 3, 2)
    for c in range(2):
        for t in range(3):
            token = z.reshape(4, 2, 3, 2)[:, c, t]
            nearest = codebooks[c][jnp.argmin(jnp.sum((token[:, None] - codebooks[c][None]) ** 2, -1), -1)]
            np.testing.assert_allclose(out[:, c, t], nearest, atol=1e-6)


def test_ema_codebook_moves_to_the_clusters_of_its_inputs():
    centers = jnp.array([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0], [0.0, -4.0]])
    vq = VectorQuantizer(codebook_size=4, decay=0.9)
    variables = vq.init(jax.random.key(1), centers)
    variables = {"vq": {**variables["vq"], "codebook": centers[None] + 1.0, "weight": centers[None] + 1.0}}

    @jax.jit
    def update(variables, key):
        z = centers[jax.random.randint(key, (64,), 0, 4)] + 0.1 * jax.random.normal(key, (64, 2))
        _, collections = vq.apply(variables, z, train=True, mutable=["vq", "losses", "stats"])
        return {"vq": collections["vq"]}, collections["stats"]

    for i in range(200):
        variables, stats = update(variables, jax.random.key(i))
    np.testing.assert_allclose(variables["vq"]["codebook"][0], centers, atol=0.1)
    assert float(stats["vq_perplexity"][0]) > 3.5 and float(stats["vq_usage"][0]) == 1.0
