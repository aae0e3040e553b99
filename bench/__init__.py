"""Benchmarks: ``python -m bench [dispatch|poll] [--quick]`` prints JSON."""
