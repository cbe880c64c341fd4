"""Benchmark harness of ttfs-native: ``python -m bench`` from the repository root."""
