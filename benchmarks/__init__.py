"""Benchmarks: paperlib against the authors' reference pipeline. Run ``python -m benchmarks``."""
