"""Datasets: RLDS episodes in TFDS format, statistics, and windows sampled on the device."""
