"""Benchmarks run the very callables production uses; ratios are against a baseline measured in the same run."""
