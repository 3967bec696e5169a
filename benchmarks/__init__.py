"""Measured comparisons: ``python -m benchmarks {op,training,tasks,reproduce} ...`` (see each module's doc)."""
