"""Runnable examples: ``python -m pyronn_ops.examples.fdk``."""
