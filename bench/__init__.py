"""Benchmarks: each script measures the project and a baseline in the same run; `--quick` is the CI size."""
