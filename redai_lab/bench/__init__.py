"""Benchmarks: the harness (warm-up, repeats, medians, environment), the lessons' benchmarks, and the
pattern helpers measured against their peers."""
