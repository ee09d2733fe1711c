"""Accumulators of per-channel statistics."""
