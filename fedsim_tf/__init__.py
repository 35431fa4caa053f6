"""fedsim-tf: Federated Simulation for Medical Imaging (Li et al., MICCAI 2020) in TensorFlow 2."""
