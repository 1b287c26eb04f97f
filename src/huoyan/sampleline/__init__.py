"""Synthetic sample production line for demos and tests."""
