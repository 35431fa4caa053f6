"""fedsim_tf.physics."""
