"""Shared pytest set-up: quiet TensorFlow logging and a fixed thread budget for our 2-core machines."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
