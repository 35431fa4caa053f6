"""Benchmarks printing speed and memory figures; run as `python -m bench.<name>` from the repository root."""
