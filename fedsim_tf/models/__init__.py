"""fedsim_tf.models."""
