"""fedsim_tf.training."""
