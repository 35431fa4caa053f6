"""A 3-D convolution layer whose kernel gradient is fast on CPU.

TensorFlow's CPU kernel for the kernel gradient of a 3-D convolution (``Conv3DBackpropFilterV2``) is slow
at the U-Net's shapes: on our 2 cores, for a ``[1, 32, 32, 32, 8]`` input and a ``3x3x3x8x8`` kernel it
takes about 7 times the forward convolution, and the kernel gradients dominate a U-Net training step.
For a stride-1 ``"same"`` convolution with an odd kernel the kernel gradient is a sum over taps of one
matrix product each,

    dL/dW[kz, ky, kx, i, o] = sum over b, z, y, x of  x_pad[b, z + kz, y + ky, x + kx, i] * g[b, z, y, x, o],

(``x_pad``: the input zero-padded by ``k // 2`` on both sides of each axis, ``g``: the upstream gradient
``dL/dy``), which :func:`kernel_gradient` computes with one ``einsum`` per tap, 3-6 times faster
(``python -m bench.segment`` prints the U-Net step rate). The input gradient stays TensorFlow's
``Conv3DBackpropInputV2``. Other convolutions (strides, dilation, ``"valid"``, even kernels,
channels-first) fall back to Keras' own path.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf


def kernel_gradient(inputs: tf.Tensor, upstream: tf.Tensor, kernel_size: Sequence[int]) -> tf.Tensor:
    """Gradient of a loss with respect to the kernel of a stride-1 ``"same"`` 3-D convolution.

    Args:
        inputs: ``[B, Z, Y, X, C_in]`` the convolution's input (channels last, any units).
        upstream: ``[B, Z, Y, X, C_out]`` the loss gradient with respect to the convolution's output.
        kernel_size: ``(kz, ky, kx)``, each odd.

    Returns:
        ``[kz, ky, kx, C_in, C_out]``, the kernel gradient, in ``inputs``' dtype.
    """
    if any(k % 2 == 0 for k in kernel_size):
        raise ValueError(f"kernel_gradient: odd kernel sizes only, got {tuple(kernel_size)}")
    halves = [k // 2 for k in kernel_size]
    padded = tf.pad(inputs, [[0, 0], *([h, h] for h in halves), [0, 0]])
    size = tf.shape(inputs)
    taps = []
    for kz in range(kernel_size[0]):
        for ky in range(kernel_size[1]):
            for kx in range(kernel_size[2]):
                window = padded[:, kz:kz + size[1], ky:ky + size[2], kx:kx + size[3], :]
                taps.append(tf.einsum("bzyxi,bzyxo->io", window, upstream))
    return tf.reshape(tf.stack(taps), (*kernel_size, inputs.shape[-1], upstream.shape[-1]))


@tf.custom_gradient
def conv3d_same(inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """``tf.nn.conv3d(inputs, kernel, strides 1, "SAME")`` with :func:`kernel_gradient` as the kernel's gradient.

    Args:
        inputs: ``[B, Z, Y, X, C_in]``.
        kernel: ``[kz, ky, kx, C_in, C_out]``, odd sizes.

    Returns:
        ``[B, Z, Y, X, C_out]``.
    """
    def gradient(upstream: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        d_inputs = tf.raw_ops.Conv3DBackpropInputV2(input_sizes=tf.shape(inputs), filter=kernel,
                                                    out_backprop=upstream, strides=[1] * 5, padding="SAME")
        return d_inputs, kernel_gradient(inputs, upstream, kernel.shape[:3])

    return tf.nn.conv3d(inputs, kernel, strides=[1] * 5, padding="SAME"), gradient


@keras.saving.register_keras_serializable(package="fedsim_tf")
class Conv3D(keras.layers.Conv3D):
    """``keras.layers.Conv3D`` (same arguments, weights and outputs) whose stride-1 ``"same"`` convolutions with
    odd kernels, channels last, differentiate their kernel with :func:`kernel_gradient`."""

    def _fast_path(self) -> bool:
        return (self.padding == "same" and self.data_format == "channels_last"
                and all(s == 1 for s in self.strides) and all(d == 1 for d in self.dilation_rate)
                and all(k % 2 == 1 for k in self.kernel_size) and self.groups == 1)

    def convolution_op(self, inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        if self._fast_path():
            return conv3d_same(tf.convert_to_tensor(inputs), tf.convert_to_tensor(kernel))
        return super().convolution_op(inputs, kernel)
