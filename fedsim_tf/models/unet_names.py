"""Names of the 3D U-Net configurations of :mod:`fedsim_tf.models.unet3d`, importable without TensorFlow
(the command line offers them before TensorFlow loads)."""

UNET_NAMES: tuple[str, ...] = ("cicek", "nnunet")
