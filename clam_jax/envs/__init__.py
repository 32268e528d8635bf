"""Simulated environments and the behaviour policies that collect data in them."""
