"""The generic training loop, optimizers, checkpoints and metric writers."""
