"""Novelty of synthetic CT volumes (paper Fig. 3): each sample's nearest training volume.

The paper shows, beside each synthetic sample, its nearest neighbour in the training set "computed on the
whole CT volume", to argue that the generator makes plausible yet novel volumes rather than copies. Here
the distance is the Euclidean norm of the voxel-wise difference of two whole volumes, in the volumes' own
intensity units (HU, or the [-1, 1] network scale, whichever the arrays hold) times ``sqrt(Z * Y * X)``.
The root-mean-square voxel difference ``distance / sqrt(Z * Y * X)`` is the same number per voxel, in
intensity units alone; :class:`NoveltySummary` reports both.

A sample is set against the training set's own leave-one-out nearest-neighbour distances: a sample
closer to a training volume than any two training volumes are to each other (below the smallest
self-distance) looks like a copy; below the median it is closer than a typical training pair.

Distances are accumulated in float64 over blocks of voxels from direct differences (no
``|a|^2 + |b|^2 - 2ab`` cancellation, so an exact copy has distance exactly 0); a block holds at most
``block_bytes`` of ``[S, N, voxels]`` differences, so no ``[S, N, Z, Y, X]`` array is ever built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_BLOCK_BYTES = 64 * 2**20


def _check_volumes(name: str, volumes: np.ndarray) -> np.ndarray:
    volumes = np.asarray(volumes)
    if volumes.ndim != 4 or volumes.shape[0] < 1:
        raise ValueError(f"{name} must be volumes [count >= 1, Z, Y, X], got shape {volumes.shape}")
    if not np.issubdtype(volumes.dtype, np.number) or np.issubdtype(volumes.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {volumes.dtype}")
    return volumes


def _squared_distances(a: np.ndarray, b: np.ndarray, block_bytes: int) -> np.ndarray:
    """Squared Euclidean distances [A, B] (float64) between volumes a [A, V] and b [B, V], blocked over V."""
    voxels = a.shape[1]
    block = max(1, block_bytes // (8 * a.shape[0] * b.shape[0]))
    total = np.zeros((a.shape[0], b.shape[0]), dtype=np.float64)
    for start in range(0, voxels, block):
        a_block = a[:, start:start + block].astype(np.float64)
        b_block = b[:, start:start + block].astype(np.float64)
        difference = a_block[:, None, :] - b_block[None, :, :]
        total += np.einsum("ijv,ijv->ij", difference, difference)
    if not np.all(np.isfinite(total)):
        raise ValueError("volumes contain NaN or infinite intensities (or overflow float64)")
    return total


def nearest_neighbours(synthetic: np.ndarray, training: np.ndarray, *,
                       block_bytes: int = DEFAULT_BLOCK_BYTES) -> tuple[np.ndarray, np.ndarray]:
    """Nearest training volume of each synthetic volume, by Euclidean distance on the whole volume.

    Args:
        synthetic: synthetic volumes [S, Z, Y, X], any real dtype, intensity units (HU or [-1, 1]).
        training: training volumes [N, Z, Y, X] on the same grid and intensity scale as ``synthetic``.
        block_bytes: memory bound of one block of float64 voxel differences.

    Returns:
        index [S] (int64): the nearest training volume of each sample (the lowest index on a tie);
        distance [S] (float64): ``||synthetic[s] - training[index[s]]||_2`` over all voxels, in intensity
        units times ``sqrt(Z * Y * X)`` (divide by that for the RMS voxel difference).

    Raises:
        ValueError: shapes are not [count, Z, Y, X], the grids differ, or an intensity is not finite.
    """
    synthetic = _check_volumes("synthetic", synthetic)
    training = _check_volumes("training", training)
    if synthetic.shape[1:] != training.shape[1:]:
        raise ValueError(f"synthetic volumes {synthetic.shape[1:]} and training volumes {training.shape[1:]} "
                         "must share one [Z, Y, X] grid")
    squared = _squared_distances(synthetic.reshape(synthetic.shape[0], -1),
                                 training.reshape(training.shape[0], -1), block_bytes)
    index = np.argmin(squared, axis=1)
    return index.astype(np.int64), np.sqrt(squared[np.arange(squared.shape[0]), index])


def training_self_distances(training: np.ndarray, *, block_bytes: int = DEFAULT_BLOCK_BYTES) -> np.ndarray:
    """Leave-one-out nearest-neighbour distance of each training volume [N] (float64).

    Args:
        training: training volumes [N >= 2, Z, Y, X], intensity units (HU or [-1, 1]).
        block_bytes: memory bound of one block of float64 voxel differences.

    Returns:
        For each volume, the Euclidean distance to its nearest OTHER training volume (itself excluded;
        a duplicate of it elsewhere in the set counts, at distance 0), in intensity units times
        ``sqrt(Z * Y * X)``.

    Raises:
        ValueError: fewer than two volumes, a shape other than [N, Z, Y, X], or an intensity not finite.
    """
    training = _check_volumes("training", training)
    if training.shape[0] < 2:
        raise ValueError(f"training needs at least 2 volumes for leave-one-out distances, got {training.shape[0]}")
    flat = training.reshape(training.shape[0], -1)
    squared = _squared_distances(flat, flat, block_bytes)
    np.fill_diagonal(squared, np.inf)
    return np.sqrt(squared.min(axis=1))


@dataclass(frozen=True)
class NoveltySummary:
    """Nearest-neighbour novelty of a synthetic set against its training set (paper Fig. 3).

    Distances are Euclidean norms over the whole volume (intensity units times ``sqrt(voxels)``); the
    ``*_rms`` values in :meth:`to_json` divide them by ``sqrt(voxels)``. ``below_min_self`` flags samples
    closer to a training volume than the closest pair of training volumes (copy-like);
    ``fraction_below_min_self`` / ``fraction_below_median_self`` are the fractions of samples whose
    nearest-neighbour distance is strictly below the smallest / median training self-distance.
    """

    nn_index: tuple[int, ...]
    nn_distance: tuple[float, ...]
    training_self_distance: tuple[float, ...]
    voxels: int
    below_min_self: tuple[bool, ...]
    fraction_below_min_self: float
    fraction_below_median_self: float

    def to_json(self) -> dict[str, object]:
        scale = float(np.sqrt(self.voxels))
        return {
            "nn_index": list(self.nn_index),
            "nn_distance": list(self.nn_distance),
            "nn_rms": [d / scale for d in self.nn_distance],
            "training_self_distance": list(self.training_self_distance),
            "training_self_rms": [d / scale for d in self.training_self_distance],
            "voxels": self.voxels,
            "below_min_self": list(self.below_min_self),
            "fraction_below_min_self": self.fraction_below_min_self,
            "fraction_below_median_self": self.fraction_below_median_self,
        }


def novelty_summary(synthetic: np.ndarray, training: np.ndarray, *,
                    block_bytes: int = DEFAULT_BLOCK_BYTES) -> NoveltySummary:
    """Nearest training volume of each synthetic volume, set against the training set's own NN distances.

    Args:
        synthetic: synthetic volumes [S, Z, Y, X], intensity units (HU or [-1, 1]).
        training: training volumes [N >= 2, Z, Y, X] on the same grid and intensity scale.
        block_bytes: memory bound of one block of float64 voxel differences.

    Raises:
        ValueError: as :func:`nearest_neighbours` and :func:`training_self_distances`.
    """
    index, distance = nearest_neighbours(synthetic, training, block_bytes=block_bytes)
    self_distance = training_self_distances(training, block_bytes=block_bytes)
    below_min = distance < self_distance.min()
    return NoveltySummary(
        nn_index=tuple(int(i) for i in index),
        nn_distance=tuple(float(d) for d in distance),
        training_self_distance=tuple(float(d) for d in self_distance),
        voxels=int(np.prod(np.shape(training)[1:])),
        below_min_self=tuple(bool(b) for b in below_min),
        fraction_below_min_self=float(below_min.mean()),
        fraction_below_median_self=float((distance < np.median(self_distance)).mean()),
    )
