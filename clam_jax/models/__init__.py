"""Flax linen modules. They know nothing of data, files or training."""
