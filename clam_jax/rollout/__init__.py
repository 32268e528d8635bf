"""Batched evaluation in simulation, and policies saved for deployment."""
