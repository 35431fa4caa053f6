"""Names of the generator variants of the paper's experiments (Table 2 and 3), importable without
TensorFlow (the command line offers them). The material variants are the CT simulator's modes,
:data:`fedsim_tf.physics.simulated_scanner.MATERIALS`."""

SHAPES: tuple[str, ...] = ("learned", "random")
"""Heart shapes from ``G_S(z)``, or SSM weights and pose drawn uniformly within ``G_S``'s ranges."""

BLENDS: tuple[str, ...] = ("none", "alpha", "poisson")
"""The GAN's volume as it is, or the simulated heart alpha- or Poisson-blended onto it."""
