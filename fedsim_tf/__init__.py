"""fedsim-tf: Federated Simulation for Medical Imaging (Li et al., MICCAI 2020) in TensorFlow 2."""

import os

# Before TensorFlow loads (every entry point imports this package first): no C++ INFO/WARNING chatter.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
