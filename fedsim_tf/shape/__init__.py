"""fedsim_tf.shape."""
