"""fedsim_tf.evaluation."""
