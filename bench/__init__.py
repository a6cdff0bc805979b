"""Benchmarks: pipelines through ``Pipeline.run`` against the same jobs written by hand in PySpark."""
