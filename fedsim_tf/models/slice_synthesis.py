"""Running ``G_GAN`` over every slice of a volume: fixed-size batches through one compiled function.

:class:`SliceSynthesizer` cuts the ``K`` conditioning maps of a volume into batches of
``batch_size`` slices (the last one padded with zero maps and cropped back; every layer of the
generator works per sample, so padding does not change the other slices) and runs them through a
``tf.function`` traced once for that batch shape, so the 2nd..nth volume pay no tracing.

Measured choices (``python -m bench.gan``, 2-core CPU, TF 2.21 with oneDNN): batching is what
pays -- the 4x4 .. 16x16 blocks of the 128^2 generator carry 1024-channel 3x3 kernels (37.7 MB
each) that a batch reuses -- while XLA (``jit_compile=True``) is slower than TensorFlow's oneDNN
graph kernels on CPU for this network, so it is off by default.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

DEFAULT_BATCH = 16


class SliceSynthesizer:
    """Generate the CT slices of whole volumes with a SPADE generator.

    Args:
        generator: ``condition [B, H, W, C] -> [B, H, W, 1]`` (:func:`fedsim_tf.models.spade.build_spade_generator`).
        batch_size: slices per generator call.
        jit_compile: compile the generator call with XLA.
    """

    def __init__(self, generator: keras.Model, batch_size: int = DEFAULT_BATCH, jit_compile: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"SliceSynthesizer: batch_size must be >= 1, got {batch_size}")
        self.generator = generator
        self.batch_size = int(batch_size)
        self.condition_shape = tuple(int(s) for s in generator.input_shape[1:])
        self._generate = tf.function(lambda batch: generator(batch, training=False), jit_compile=jit_compile)

    def __call__(self, conditions: np.ndarray | tf.Tensor) -> np.ndarray:
        """CT slices of one volume.

        Args:
            conditions: ``[K, H, W, C]`` conditioning maps of the volume's slices (slice ``k`` of
                ``K`` in row ``k``), float.

        Returns:
            ``[K, H, W, 1]`` float32 CT slices on the ``[-1, 1]`` scale.

        Raises:
            ValueError: maps whose ``[H, W, C]`` differ from the generator's input.
        """
        conditions = np.asarray(conditions, dtype=np.float32)
        if conditions.ndim != 4 or conditions.shape[1:] != self.condition_shape:
            raise ValueError(
                f"SliceSynthesizer: conditioning maps must be [K, {', '.join(map(str, self.condition_shape))}], "
                f"got {list(conditions.shape)}"
            )
        count = conditions.shape[0]
        slices = np.empty((count, *self.condition_shape[:2], 1), np.float32)
        padded = np.zeros((self.batch_size, *self.condition_shape), np.float32)
        for start in range(0, count, self.batch_size):
            chunk = conditions[start : start + self.batch_size]
            padded[: len(chunk)] = chunk
            padded[len(chunk) :] = 0.0
            slices[start : start + len(chunk)] = self._generate(tf.constant(padded)).numpy()[: len(chunk)]
        return slices
