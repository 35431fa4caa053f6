"""Keras 3 layers wrapping the cone-beam operators (TensorFlow backend), serialisable via get_config."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from pyronn_ops.geometry import GeometryCone3D
from pyronn_ops.operator_setup import DEFAULT_CHUNK_ELEMENTS
from pyronn_ops.ops import DEFAULT_BACKEND, cone_backprojection3d, cone_projection3d


def _as_geometry(geometry: GeometryCone3D | dict[str, Any]) -> GeometryCone3D:
    if isinstance(geometry, dict):
        geometry = GeometryCone3D.from_config(geometry)
    if not isinstance(geometry, GeometryCone3D):
        raise ValueError(f"geometry must be a GeometryCone3D or its to_config() dict, got {type(geometry).__name__}")
    geometry.require_trajectory()
    return geometry


class _ConeLayer(keras.layers.Layer):
    """Common configuration of the two cone-beam layers (one scanner shared by the batch)."""

    def __init__(
        self,
        geometry: GeometryCone3D | dict[str, Any],
        hardware_interp: bool = True,
        step_size: float | None = None,
        grad_mode: str = "pyronn",
        end_correction_rule: bool = True,
        backend: str = DEFAULT_BACKEND,
        chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.geometry = _as_geometry(geometry)
        self.hardware_interp = bool(hardware_interp)
        self.step_size = None if step_size is None else float(step_size)
        self.grad_mode = grad_mode
        self.end_correction_rule = bool(end_correction_rule)
        self.backend = backend
        self.chunk_elements = int(chunk_elements)

    def _options(self) -> dict[str, Any]:
        return {
            "hardware_interp": self.hardware_interp,
            "step_size": self.step_size,
            "grad_mode": self.grad_mode,
            "end_correction_rule": self.end_correction_rule,
            "backend": self.backend,
            "chunk_elements": self.chunk_elements,
        }

    def _check_input_shape(self, input_shape: tuple, expected: tuple[int, ...], name: str) -> None:
        if len(input_shape) != len(expected) + 1 or tuple(input_shape[1:]) != tuple(expected):
            raise ValueError(f"{self.name}: {name} input shape {tuple(input_shape)} must be (batch, {', '.join(map(str, expected))})")

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"geometry": self.geometry.to_config(), **self._options()})
        return config


@keras.saving.register_keras_serializable(package="pyronn_ops")
class ConeProjection3D(_ConeLayer):
    """Cone-beam forward projection layer: ``[B, Z, Y, X]`` volume (value/mm) -> ``[B, N, H, W]``
    line integrals (value * mm). Arguments as :func:`pyronn_ops.ops.cone_projection3d`;
    ``geometry`` may also be a ``GeometryCone3D.to_config()`` dict."""

    def build(self, input_shape: tuple) -> None:
        self._check_input_shape(input_shape, self.geometry.volume_shape, "volume")
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return cone_projection3d(inputs, self.geometry, **self._options())

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], *self.geometry.sinogram_shape)


@keras.saving.register_keras_serializable(package="pyronn_ops")
class ConeBackprojection3D(_ConeLayer):
    """Cone-beam FDK-weighted back-projection layer: ``[B, N, H, W]`` -> ``[B, Z, Y, X]``.
    Arguments as :func:`pyronn_ops.ops.cone_backprojection3d`; ``geometry`` may also be a
    ``GeometryCone3D.to_config()`` dict."""

    def build(self, input_shape: tuple) -> None:
        self._check_input_shape(input_shape, self.geometry.sinogram_shape, "sinogram")
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return cone_backprojection3d(inputs, self.geometry, **self._options())

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], *self.geometry.volume_shape)
