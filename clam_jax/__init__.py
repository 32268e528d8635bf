"""clam_jax: Continuous Latent Action Models (Liang et al. 2025) in JAX/Flax."""

__version__ = "0.1.0"
