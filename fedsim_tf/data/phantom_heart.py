"""Phantom hearts: a richer shape process than the shape model's template family.

A phantom heart starts as a template-family heart (:func:`fedsim_tf.shape.template.sample_parameters`
and :func:`~fedsim_tf.shape.template.build_heart`), then:

1. a smooth non-linear deformation ``x -> x + D(x)`` moves every vertex: ``D`` is a sum of
   :data:`WARP_MODES` plane waves ``a_k sin(w_k . x + phi_k)`` with random directions,
   wavelengths of 45-100 mm times the heart's size and amplitudes whose root-mean-square
   displacement is :data:`WARP_RMS_MM` times the size. The amplitudes are scaled down where
   needed so that ``|J - I| <= MAX_WARP_GRADIENT < 1`` (spectral norm of the Jacobian's deviation
   from the identity, checked on a lattice over the heart): a map whose displacement is
   contracting like that is injective, so the surfaces stay closed and free of self-intersections;
2. both atrial appendages are added as ellipsoidal lobes (left: long and narrow, left-anterior
   of the left atrium; right: broad, anterior-superior of the right atrium), labelled as their
   atrium where they cover background.

Neither step is in the linear span of a PCA model trained on template-family hearts, so a
shape model fitted to such hearts cannot reproduce phantom hearts exactly (the error is reported
by ``bench/phantoms.py``). Papillary muscles, trabeculation, valves, vessels and contrast are
painted into the image by :mod:`fedsim_tf.data.phantom_heart_detail`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsim_tf.anatomy import NAME_TO_INDEX
from fedsim_tf.data.phantom_object import capsule
from fedsim_tf.grid import Grid
from fedsim_tf.shape.mesh import HeartMesh
from fedsim_tf.shape.template import build_heart, sample_parameters
from fedsim_tf.shape.voxelize import voxelize

WARP_MODES = 8
WARP_WAVELENGTH_MM: tuple[float, float] = (45.0, 100.0)
WARP_RMS_MM = 4.0
"""Root-mean-square displacement of the warp for an adult heart (size 1), mm."""
MAX_WARP_GRADIENT = 0.6


@dataclass(frozen=True)
class Lobe:
    """An ellipsoidal appendage.

    Attributes:
        label: structure index it is labelled with.
        centre: ``(3,)`` world mm.
        axes: ``(3, 3)`` rotation, columns are the unit semi-axis directions.
        semi: ``(3,)`` semi-axis lengths, mm.
    """

    label: int
    centre: np.ndarray
    axes: np.ndarray
    semi: np.ndarray

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Bool of ``points.shape[:-1]``: ``(..., 3)`` world points inside the lobe."""
        local = (points - self.centre) @ self.axes / self.semi
        return np.sum(local**2, axis=-1) <= 1.0


@dataclass(frozen=True)
class PhantomHeart:
    """One phantom heart.

    Attributes:
        mesh: the deformed heart (template topology, world RAS+ mm).
        template: the template-family heart before the deformation.
        lobes: atrial appendages.
        size: the heart's linear size relative to the adult template.
    """

    mesh: HeartMesh
    template: HeartMesh
    lobes: tuple[Lobe, ...]
    size: float

    def labels(self, grid: Grid) -> np.ndarray:
        """``(Z, Y, X)`` uint8 label indices 0..7 of the heart on ``grid`` (mesh voxelisation
        plus the appendages where the mesh left background)."""
        labels = voxelize(self.mesh, grid)
        for lobe in self.lobes:
            found = capsule(grid, lobe.centre, lobe.centre, float(lobe.semi.max()), float(lobe.semi.max()))
            if found is not None:
                region, near = found
                k, j, i = np.meshgrid(*(np.arange(r.start, r.stop) for r in region), indexing="ij")
                inside = near & lobe.contains(grid.index_to_world(np.stack([i, j, k], axis=-1)))
                labels[region][inside & (labels[region] == 0)] = lobe.label
        return labels

    def structure_centre(self, name: str) -> np.ndarray:
        """Vertex centroid (world mm) of structure ``name`` of the deformed mesh."""
        return self.mesh.structures[NAME_TO_INDEX[name] - 1].vertices.mean(axis=0)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def warp_jacobian_deviation(points: np.ndarray, warp: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Spectral norm of ``J - I`` of the warp at ``(P, 3)`` world points (``(P,)``)."""
    waves, amplitudes, phases = warp
    cosines = np.cos(points @ waves.T + phases)  # (P, K)
    deviation = np.einsum("pk,ki,kj->pij", cosines, amplitudes, waves)
    return np.linalg.norm(deviation, ord=2, axis=(1, 2))


def random_warp(rng: np.random.Generator, size: float, box: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parameters of one smooth deformation (module docstring) of a heart inside ``box``.

    Args:
        rng: random source.
        size: the heart's linear size (scales wavelengths and amplitudes).
        box: ``(2, 3)`` world mm, min and max corner of the region to deform.

    Returns:
        ``(wave_vectors (K, 3) rad/mm, amplitudes (K, 3) mm, phases (K,))``; the largest
        ``|J - I|`` on a 16^3 lattice over ``box`` (plus 20 mm) is at most :data:`MAX_WARP_GRADIENT`.
    """
    directions = rng.standard_normal((WARP_MODES, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    wavelengths = rng.uniform(*WARP_WAVELENGTH_MM, WARP_MODES) * size
    waves = directions * (2 * np.pi / wavelengths)[:, None]
    amplitudes = rng.standard_normal((WARP_MODES, 3))
    # mean of sin^2 is 1/2: the RMS displacement is sqrt(sum |a_k|^2 / 2)
    amplitudes *= WARP_RMS_MM * size / np.sqrt((amplitudes**2).sum() / 2)
    warp = (waves, amplitudes, rng.uniform(0, 2 * np.pi, WARP_MODES))
    axes = [np.linspace(lo - 20.0, hi + 20.0, 16) for lo, hi in zip(*box)]
    lattice = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    worst = float(warp_jacobian_deviation(lattice, warp).max())
    if worst > MAX_WARP_GRADIENT:
        warp = (waves, amplitudes * (MAX_WARP_GRADIENT / worst), warp[2])
    return warp


def apply_warp(points: np.ndarray, warp: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """``(..., 3)`` world points moved by the warp ``x + sum_k a_k sin(w_k . x + phi_k)``."""
    waves, amplitudes, phases = warp
    return points + np.sin(points @ waves.T + phases) @ amplitudes


def _appendage(mesh: HeartMesh, name: str, direction: np.ndarray, semi: np.ndarray, rng: np.random.Generator) -> Lobe:
    """An appendage of structure ``name`` bulging from its surface towards ``direction``."""
    vertices = mesh.structures[NAME_TO_INDEX[name] - 1].vertices
    centre = vertices.mean(axis=0)
    axis = _unit(direction + rng.normal(0.0, 0.15, 3))
    tip = vertices[np.argmax((vertices - centre) @ axis)]
    long_axis = axis
    side = _unit(np.cross(long_axis, [0.0, 0.0, 1.0]) + 1e-6)
    frame = np.stack([long_axis, side, np.cross(long_axis, side)], axis=1)
    return Lobe(NAME_TO_INDEX[name], tip + 0.35 * semi[0] * long_axis, frame, semi)


def draw_phantom_heart(rng: np.random.Generator, population: str) -> PhantomHeart:
    """Draw one phantom heart of a population preset (vertex centroid of the deformed mesh at the
    origin; appendages drawn from ``rng`` too).

    Args:
        rng: random source (consumed: template parameters, then warp, then appendages).
        population: a key of :data:`fedsim_tf.shape.template.PRESETS`.
    """
    params = sample_parameters(rng, population)
    template = build_heart(params)
    vertices = template.stacked_vertices()
    box = np.stack([vertices.min(axis=0), vertices.max(axis=0)])
    warped = apply_warp(vertices, random_warp(rng, params.size, box))
    warped -= warped.mean(axis=0)
    mesh = template.with_stacked_vertices(warped)
    size = params.size
    lobes = (
        _appendage(mesh, "la", np.array([-0.7, 0.6, 0.4]), np.array([20.0, 8.0, 7.0]) * size * params.la, rng),
        _appendage(mesh, "ra", np.array([0.3, 0.8, 0.5]), np.array([16.0, 11.0, 8.0]) * size * params.ra, rng),
    )
    return PhantomHeart(mesh, template, lobes, float(size))
