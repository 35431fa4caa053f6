"""Statistical shape model (SSM) of the whole heart: generalised Procrustes + PCA.

Training shapes are :class:`HeartMesh` es with the template topology (corresponding vertices).
Each heart is flattened to its stacked vertices ``(sum V, 3)`` (all seven structures in
anatomy order) and aligned by generalised Procrustes analysis (GPA) with a similarity
transform: translation to the vertex centroid, scale to a common centroid size (the mean
centroid size of the training set, so the model stays in mm), and the rotation that best
matches the current mean (Kabsch, proper rotations only). The shape-generation pose has seven
parameters (3 rotation, 3 translation, 1 scale), so removing exactly these in GPA leaves the
modes with shape only and no pose/size component. PCA of the aligned shapes gives the mean
(vertex centroid at the origin) and orthonormal modes; ``stddevs[k]`` is the standard
deviation (mm, sample variance over ``N - 1``) of the training set along mode ``k``.

A shape instance is ``mean + sum_k weights[k] * stddevs[k] * modes[k]``: weights are in units
of each mode's standard deviation (``weights ~ N(0, 1)`` samples the training distribution),
``instance(zeros) == mean``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedsim_tf.anatomy import NUM_STRUCTURES, STRUCTURE_NAMES
from fedsim_tf.atomic import atomic_path
from fedsim_tf.cache_dir import cache_dir as project_cache_dir
from fedsim_tf.shape.mesh import HeartMesh, StructureMesh
from fedsim_tf.shape.template import TEMPLATE_VERSION, sample_population

SSM_FORMAT_VERSION = 1
_MAGIC = "fedsim_tf.StatisticalShapeModel"


class SSMFileError(ValueError):
    """A saved shape model is missing, unreadable, truncated, corrupt or of another version."""


@dataclass(frozen=True)
class Similarity:
    """``x -> scale * rotation @ x + translation`` on world points (mm).

    Attributes:
        scale: positive scale factor.
        rotation: ``(3, 3)`` proper rotation.
        translation: ``(3,)`` mm.
    """

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def apply(self, points: np.ndarray) -> np.ndarray:
        """``(..., 3)`` points -> transformed ``(..., 3)`` points."""
        return self.scale * np.asarray(points) @ self.rotation.T + self.translation

    def inverse_apply(self, points: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`apply` on ``(..., 3)`` points."""
        return (np.asarray(points) - self.translation) @ self.rotation / self.scale


def centroid_size(points: np.ndarray) -> float:
    """Root of the summed squared distances of ``(V, 3)`` points to their centroid (mm)."""
    return float(np.sqrt(((points - points.mean(axis=0)) ** 2).sum()))


def procrustes_align(shape: np.ndarray, reference: np.ndarray, size: float) -> tuple[np.ndarray, Similarity]:
    """Similarity-align one shape to a centred reference with scale normalisation.

    Args:
        shape: ``(V, 3)`` points in mm.
        reference: ``(V, 3)`` corresponding points, centroid at the origin.
        size: centroid size (mm) the aligned shape gets.

    Returns:
        ``(V, 3)`` aligned points (centroid at the origin, centroid size ``size``, rotated to
        best match ``reference`` in least squares) and the similarity mapping ``shape`` onto them.
    """
    centroid = shape.mean(axis=0)
    scale = size / centroid_size(shape)
    centred = (shape - centroid) * scale
    u, _, vt = np.linalg.svd(reference.T @ centred)
    flip = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ flip @ vt
    transform = Similarity(scale, rotation, -scale * rotation @ centroid)
    return centred @ rotation.T, transform


def generalized_procrustes(
    shapes: np.ndarray, tol: float = 1e-12, max_iter: int = 200
) -> tuple[np.ndarray, list[Similarity]]:
    """Generalised Procrustes analysis with similarity transforms.

    Args:
        shapes: ``(N, V, 3)`` corresponding point sets in mm.
        tol: convergence threshold on the RMS change of the mean (mm).
        max_iter: iteration cap.

    Returns:
        ``(N, V, 3)`` aligned shapes (each centred, centroid size = mean input centroid size,
        rotated onto their mean) and the ``N`` similarities that map each input onto its
        aligned shape.
    """
    size = float(np.mean([centroid_size(s) for s in shapes]))
    mean = shapes[0] - shapes[0].mean(axis=0)
    for _ in range(max_iter):
        results = [procrustes_align(s, mean, size) for s in shapes]
        aligned = np.stack([r[0] for r in results])
        new_mean = aligned.mean(axis=0)
        change = np.sqrt(((new_mean - mean) ** 2).mean())
        mean = new_mean
        if change < tol:
            break
    results = [procrustes_align(s, mean, size) for s in shapes]
    return np.stack([r[0] for r in results]), [r[1] for r in results]


def _as_vertices(shape: HeartMesh | np.ndarray) -> np.ndarray:
    return shape.stacked_vertices() if isinstance(shape, HeartMesh) else np.asarray(shape, dtype=np.float64)


class StatisticalShapeModel:
    """PCA shape model over the stacked vertices of the seven structures (see module doc).

    Args:
        mean: mean heart (template topology), vertex centroid at the origin, mm.
        modes: ``(n_modes, 3 * sum V)`` orthonormal rows; the flattening is
            ``stacked_vertices().reshape(-1)`` (vertex-major, x/y/z fastest).
        stddevs: ``(n_modes,)`` mm, non-increasing, >= 0.
        total_variance: summed variance (mm^2) of all PCA components of the training set.
        size: centroid size (mm) of the aligned shapes.
    """

    def __init__(
        self, mean: HeartMesh, modes: np.ndarray, stddevs: np.ndarray, total_variance: float, size: float
    ) -> None:
        modes = np.asarray(modes, dtype=np.float64)
        stddevs = np.asarray(stddevs, dtype=np.float64)
        n_flat = 3 * sum(mean.vertex_counts)
        if modes.ndim != 2 or modes.shape[1] != n_flat:
            raise ValueError(f"modes must be (n_modes, {n_flat}), got {modes.shape}")
        if stddevs.shape != (modes.shape[0],) or np.any(stddevs < 0) or not np.all(np.isfinite(stddevs)):
            raise ValueError(f"stddevs must be ({modes.shape[0]},) finite and >= 0, got {stddevs.shape}")
        if not total_variance > 0 or not size > 0:
            raise ValueError(f"total_variance and size must be > 0, got {total_variance}, {size}")
        self._mean = mean
        self._mean_flat = mean.stacked_vertices().reshape(-1)
        self._modes = modes
        self._stddevs = stddevs
        self._scaled_modes = stddevs[:, None] * modes
        self.total_variance = float(total_variance)
        self.size = float(size)

    @classmethod
    def fit(cls, meshes: list[HeartMesh], n_modes: int = 14) -> "StatisticalShapeModel":
        """Fit by GPA + PCA.

        Args:
            meshes: ``N >= 2`` hearts with identical topology (corresponding vertices).
            n_modes: number of modes kept, ``1 <= n_modes <= N - 1``.
        """
        if len(meshes) < 2:
            raise ValueError(f"meshes: need at least 2 training hearts, got {len(meshes)}")
        if not 1 <= n_modes <= len(meshes) - 1:
            raise ValueError(f"n_modes: must be in [1, {len(meshes) - 1}] for {len(meshes)} hearts, got {n_modes}")
        ref = meshes[0]
        for i, m in enumerate(meshes):
            if m.vertex_counts != ref.vertex_counts or any(
                not np.array_equal(a.faces, b.faces) for a, b in zip(m.structures, ref.structures)
            ):
                raise ValueError(f"meshes[{i}]: topology differs from meshes[0] (no correspondence)")
        aligned, _ = generalized_procrustes(np.stack([m.stacked_vertices() for m in meshes]))
        size = centroid_size(aligned[0])
        flat = aligned.reshape(len(meshes), -1)
        mean_flat = flat.mean(axis=0)
        _, sing, vt = np.linalg.svd(flat - mean_flat, full_matrices=False)
        variances = sing**2 / (len(meshes) - 1)
        modes = vt[:n_modes]
        # Deterministic sign: the largest-magnitude component of each mode is positive.
        modes = modes * np.sign(modes[np.arange(n_modes), np.abs(modes).argmax(axis=1)])[:, None]
        mean = ref.with_stacked_vertices(mean_flat.reshape(-1, 3))
        return cls(mean, modes, np.sqrt(variances[:n_modes]), float(variances.sum()), size)

    @property
    def mean(self) -> HeartMesh:
        """Mean heart (vertex centroid at the origin, mm)."""
        return self._mean

    @property
    def modes(self) -> np.ndarray:
        """``(n_modes, 3 * sum V)`` orthonormal modes."""
        return self._modes

    @property
    def stddevs(self) -> np.ndarray:
        """``(n_modes,)`` standard deviation along each mode in mm."""
        return self._stddevs

    @property
    def n_modes(self) -> int:
        return int(self._modes.shape[0])

    @property
    def explained_variance_ratio(self) -> np.ndarray:
        """``(n_modes,)`` share of the training set's total variance per mode."""
        return self._stddevs**2 / self.total_variance

    def instance_vertices(self, weights: np.ndarray) -> np.ndarray:
        """Many instances at once.

        Args:
            weights: ``(M, n_modes)`` (or ``(n_modes,)``) weights in units of each mode's std.

        Returns:
            ``(M, sum V, 3)`` (or ``(sum V, 3)``) float64 vertices in mm, model frame.
        """
        w = np.asarray(weights, dtype=np.float64)
        if w.shape[-1:] != (self.n_modes,) or w.ndim not in (1, 2):
            raise ValueError(f"weights: expected (M, {self.n_modes}) or ({self.n_modes},), got {w.shape}")
        flat = self._mean_flat + w @ self._scaled_modes
        return flat.reshape(w.shape[:-1] + (-1, 3))

    def instance(self, weights: np.ndarray) -> HeartMesh:
        """One heart from ``(n_modes,)`` weights in units of each mode's std (zeros: the mean)."""
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (self.n_modes,):
            raise ValueError(f"weights: expected ({self.n_modes},), got {w.shape}")
        return self._mean.with_stacked_vertices(self.instance_vertices(w))

    def align(self, shape: HeartMesh | np.ndarray) -> tuple[np.ndarray, Similarity]:
        """Similarity-align a heart (or ``(sum V, 3)`` vertices) to the mean as GPA does.

        Returns:
            ``(sum V, 3)`` aligned vertices and the similarity mapping the input onto them.
        """
        return procrustes_align(_as_vertices(shape), self._mean_flat.reshape(-1, 3), self.size)

    def project(self, shape: HeartMesh | np.ndarray) -> tuple[np.ndarray, Similarity]:
        """Least-squares weights of a heart after alignment.

        Returns:
            ``(n_modes,)`` weights in std units (0 for modes with zero std) and the alignment;
            ``alignment.inverse_apply(instance_vertices(weights))`` reconstructs the input.
        """
        aligned, transform = self.align(shape)
        coeffs = self._modes @ (aligned.reshape(-1) - self._mean_flat)
        safe = np.where(self._stddevs > 0, self._stddevs, 1.0)
        return np.where(self._stddevs > 0, coeffs / safe, 0.0), transform

    def reconstruction(self, shape: HeartMesh) -> HeartMesh:
        """The model's best approximation of ``shape`` in its own frame: least-squares weights of
        all modes after similarity alignment, mapped back by the inverse alignment."""
        weights, transform = self.project(shape)
        return shape.with_stacked_vertices(transform.inverse_apply(self.instance_vertices(weights)))

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to an ``.npz`` file atomically (temporary name, then rename)."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {
            "magic": np.array(_MAGIC),
            "format_version": np.array(SSM_FORMAT_VERSION),
            "structure_names": np.array(STRUCTURE_NAMES),
            "mean": self._mean.stacked_vertices(),
            "modes": self._modes,
            "stddevs": self._stddevs,
            "total_variance": np.array(self.total_variance),
            "size": np.array(self.size),
        }
        for k, s in enumerate(self._mean.structures):
            arrays[f"faces_{k}"] = s.faces
        arrays["vertex_counts"] = np.array(self._mean.vertex_counts)
        with atomic_path(path) as temporary, open(temporary, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "StatisticalShapeModel":
        """Read a model written by :meth:`save`.

        Raises:
            SSMFileError: the file is missing, not an SSM archive, truncated/corrupt, of another
                format version, or its arrays are inconsistent.
        """
        path = Path(path)
        if not path.is_file():
            raise SSMFileError(f"{path}: no such shape-model file")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise SSMFileError(f"{path}: not a readable .npz shape model (truncated or corrupt?): {exc}") from None
        try:
            return cls._from_arrays(arrays)
        except (KeyError, ValueError, TypeError) as exc:
            raise SSMFileError(f"{path}: invalid shape model: {exc}") from None

    @classmethod
    def _from_arrays(cls, arrays: dict[str, np.ndarray]) -> "StatisticalShapeModel":
        if "magic" not in arrays or str(arrays["magic"]) != _MAGIC:
            raise ValueError("not a fedsim_tf shape model (magic string missing)")
        version = int(arrays["format_version"])
        if version != SSM_FORMAT_VERSION:
            raise ValueError(f"format version {version}, this code reads version {SSM_FORMAT_VERSION}")
        names = tuple(str(n) for n in arrays["structure_names"])
        if names != STRUCTURE_NAMES:
            raise ValueError(f"structures {names}, expected {STRUCTURE_NAMES}")
        counts = arrays["vertex_counts"].astype(np.int64)
        mean = np.asarray(arrays["mean"], dtype=np.float64)
        if counts.shape != (NUM_STRUCTURES,) or mean.shape != (int(counts.sum()), 3):
            raise ValueError(f"mean has shape {mean.shape}, vertex counts {counts.tolist()}")
        for key in ("mean", "modes", "stddevs"):
            if not np.all(np.isfinite(arrays[key])):
                raise ValueError(f"array {key!r} has non-finite values")
        parts = np.split(mean, np.cumsum(counts)[:-1])
        heart = HeartMesh(
            tuple(StructureMesh(n, v, arrays[f"faces_{k}"]) for k, (n, v) in enumerate(zip(STRUCTURE_NAMES, parts)))
        )
        return cls(heart, arrays["modes"], arrays["stddevs"], float(arrays["total_variance"]), float(arrays["size"]))


DEFAULT_SSM_RECIPE: dict[str, object] = {
    "builder": 1,
    "template_version": TEMPLATE_VERSION,
    "format_version": SSM_FORMAT_VERSION,
    "population": {"adult": 30, "chd_lc": 15, "chd_mc": 15},
    "seed": 2020,
    "n_modes": 14,
}
"""What the default SSM is built from; its hash names the cache file."""


def default_ssm_training_hearts() -> list[HeartMesh]:
    """The hearts the default SSM is fitted to: template-family hearts of
    :data:`DEFAULT_SSM_RECIPE`, drawn with ``numpy.random.default_rng(seed + k)`` per population
    (never one of the phantom hospitals' hearts, which come from per-case streams and are
    deformed beyond the template family; see :mod:`fedsim_tf.data.phantom_heart`)."""
    population: dict[str, int] = DEFAULT_SSM_RECIPE["population"]  # type: ignore[assignment]
    seed = int(DEFAULT_SSM_RECIPE["seed"])  # type: ignore[arg-type]
    meshes: list[HeartMesh] = []
    for offset, (preset, count) in enumerate(population.items()):
        meshes += sample_population(count, preset, seed=seed + offset)
    return meshes


def build_default_ssm() -> StatisticalShapeModel:
    """Build the default SSM from :data:`DEFAULT_SSM_RECIPE` (deterministic, about a second)."""
    n_modes = int(DEFAULT_SSM_RECIPE["n_modes"])  # type: ignore[arg-type]
    return StatisticalShapeModel.fit(default_ssm_training_hearts(), n_modes=n_modes)


def default_ssm_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Cache file of the default SSM: ``cache_dir``, else ``$FEDSIM_CACHE_DIR``, else
    ``~/.cache/fedsim_tf``; the file name carries a hash of :data:`DEFAULT_SSM_RECIPE`."""
    root = cache_dir or project_cache_dir()
    digest = hashlib.sha256(json.dumps(DEFAULT_SSM_RECIPE, sort_keys=True).encode()).hexdigest()[:16]
    return Path(root) / f"default_ssm_{digest}.npz"


def default_ssm(cache_dir: str | os.PathLike | None = None) -> StatisticalShapeModel:
    """The default SSM, from the in-process cache, the disk cache, or built and cached.

    A cache file that fails to load is rebuilt and replaced; an unwritable cache directory only
    warns. The same object is returned for the same cache path within a process.
    """
    return _default_ssm_at(str(default_ssm_path(cache_dir)))


@functools.lru_cache(maxsize=4)
def _default_ssm_at(path: str) -> StatisticalShapeModel:
    """In-process cache of :func:`default_ssm`, keyed by the cache file path."""
    if Path(path).is_file():
        try:
            return StatisticalShapeModel.load(path)
        except SSMFileError as exc:
            warnings.warn(f"rebuilding the default shape model: {exc}", stacklevel=3)
    ssm = build_default_ssm()
    try:
        ssm.save(path)
    except OSError as exc:
        warnings.warn(f"{path}: could not cache the default shape model: {exc}", stacklevel=3)
    return ssm
