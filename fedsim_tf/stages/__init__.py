"""fedsim_tf.stages."""
