"""Exact voxelisation of closed triangle meshes into label maps.

A voxel belongs to a structure when its centre lies inside the structure's closed surface
(nonzero winding number). The test is exact, not a sampling approximation:

1. The vertices are mapped to voxel index space ``(i=x, j=y, k=z)`` with the grid's inverse
   affine (any affine: flipped, oblique, anisotropic), so voxel centres sit at integer indices.
2. Every row ``(k, j)`` is a ray along ``+i``. For each triangle, the rows inside its ``(j, k)``
   bounding box are tested with edge functions; points exactly on an edge or vertex are decided
   by a symbolic perturbation of the ray to ``(j + eps, k + eps^2)``, each shared edge being
   evaluated with one canonical vertex order, so a ray through a vertex or edge is counted
   exactly once (watertight).
3. Each hit adds ``+-1`` (the sign of the triangle's facing along ``i``) at the first voxel past
   the crossing; a cumulative sum along ``i`` gives the winding number of every voxel centre.

All work is vectorised over (triangle, row) pairs in NumPy and restricted to each mesh's bounding
box. Overlaps between structures are resolved by :data:`LABEL_PRECEDENCE`.
"""

from __future__ import annotations

import numpy as np

from fedsim_tf.anatomy import NAME_TO_INDEX, NUM_STRUCTURES
from fedsim_tf.grid import Grid
from fedsim_tf.shape.mesh import HeartMesh, StructureMesh

LABEL_PRECEDENCE: tuple[str, ...] = ("lv_myo", "pa", "aorta", "ra", "la", "rv", "lv")
"""Structure names from lowest to highest precedence: where closed surfaces overlap, the voxel
gets the label of the later one. Blood pools and vessels win over the myocardium, so the LV blood
pool carves its cavity out of the myocardium's closed epicardial surface; ventricles win over atria
and atria over the great vessels at the valve planes."""

_Box = tuple[tuple[int, int, int], np.ndarray]


def _perturbed_sign(value: np.ndarray, dj: np.ndarray, dk: np.ndarray) -> np.ndarray:
    """Sign of an edge function at the ray ``(j + eps, k + eps^2)`` for infinitesimal ``eps``.

    ``value = dj (pk - ak) - dk (pj - aj)`` at the unperturbed point; the perturbation adds
    ``-dk eps + dj eps^2``. Zero is returned only for an edge of zero projected length.
    """
    sign = np.sign(value)
    tie = sign == 0
    sign[tie] = np.sign(-dk[tie])
    tie &= sign == 0
    sign[tie] = np.sign(dj[tie])
    return sign


def _occupancy_box(vertices_ijk: np.ndarray, faces: np.ndarray, shape: tuple[int, int, int]) -> _Box | None:
    """Winding-number occupancy of one closed mesh, restricted to its bounding box.

    Args:
        vertices_ijk: ``(V, 3)`` float64 vertex positions in voxel index space ``(i, j, k)``.
        faces: ``(F, 3)`` int64 vertex indices of a closed, consistently oriented mesh.
        shape: ``(Z, Y, X)`` grid size.

    Returns:
        ``((k0, j0, i0), occ)`` with ``occ`` a bool ``[z, y, x]`` box whose first voxel is
        ``(k0, j0, i0)``, or ``None`` when no row of the grid crosses the mesh.
    """
    nz, ny, nx = shape
    if len(faces) == 0:
        return None
    tri = vertices_ijk[faces]  # (F, 3 corners, 3 coords i, j, k)
    tj, tk = tri[:, :, 1], tri[:, :, 2]
    jlo = np.maximum(np.ceil(tj.min(axis=1)), 0).astype(np.int64)
    jhi = np.minimum(np.floor(tj.max(axis=1)), ny - 1).astype(np.int64)
    klo = np.maximum(np.ceil(tk.min(axis=1)), 0).astype(np.int64)
    khi = np.minimum(np.floor(tk.max(axis=1)), nz - 1).astype(np.int64)
    nj = np.maximum(jhi - jlo + 1, 0)
    count = nj * np.maximum(khi - klo + 1, 0)
    total = int(count.sum())
    if total == 0:
        return None

    # Expand (triangle, row) pairs.
    tid = np.repeat(np.arange(len(faces)), count)
    local = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    pj = jlo[tid] + local % nj[tid]
    pk = klo[tid] + local // nj[tid]

    # Edge e opposite corner e runs from corner (e+1)%3 to (e+2)%3; evaluate it with the
    # lower vertex id first so that both triangles sharing it get bit-identical values.
    edge_fn = np.empty((3, total))
    edge_sign = np.empty((3, total))
    for e in range(3):
        u, w = (e + 1) % 3, (e + 2) % 3
        swap = faces[:, u] > faces[:, w]
        a = np.where(swap[:, None], tri[:, w, 1:], tri[:, u, 1:])
        b = np.where(swap[:, None], tri[:, u, 1:], tri[:, w, 1:])
        flip = np.where(swap, -1.0, 1.0)[tid]
        dj = (b[:, 0] - a[:, 0])[tid]
        dk = (b[:, 1] - a[:, 1])[tid]
        value = dj * (pk - a[tid, 1]) - dk * (pj - a[tid, 0])
        edge_fn[e] = flip * value
        edge_sign[e] = flip * _perturbed_sign(value, dj, dk)
    hit = (edge_sign[0] == edge_sign[1]) & (edge_sign[1] == edge_sign[2]) & (edge_sign[0] != 0)
    weight_sum = edge_fn.sum(axis=0)
    hit &= weight_sum != 0
    if not np.any(hit):
        return None
    ti = tri[:, :, 0][tid[hit]]  # (H, 3) i of the corners
    ei = edge_fn[:, hit]
    i_cross = (ei[0] * ti[:, 0] + ei[1] * ti[:, 1] + ei[2] * ti[:, 2]) / weight_sum[hit]
    # Voxel centre i is past the crossing when i > i_cross: the first such index, clipped to
    # [0, X] (column X is a sink for crossings beyond the grid).
    toggle = np.clip(np.floor(i_cross) + 1, 0, nx).astype(np.int64)
    sign = edge_sign[0, hit]
    rows_j, rows_k = pj[hit], pk[hit]

    k0, j0, i0 = int(rows_k.min()), int(rows_j.min()), int(toggle.min())
    bz = int(rows_k.max()) - k0 + 1
    by = int(rows_j.max()) - j0 + 1
    bx = int(toggle.max()) - i0 + 1
    flat = ((rows_k - k0) * by + (rows_j - j0)) * bx + (toggle - i0)
    steps = np.bincount(flat, weights=sign, minlength=bz * by * bx).reshape(bz, by, bx)
    winding = np.cumsum(steps, axis=2)[:, :, : min(bx, nx - i0)]
    occ = winding != 0
    return (k0, j0, i0), occ


def _structure_boxes(heart: HeartMesh, grid: Grid) -> list[_Box | None]:
    """Per-structure occupancy boxes, in anatomy order."""
    if not isinstance(heart, HeartMesh):
        raise ValueError(f"heart must be a HeartMesh, got {type(heart).__name__}")
    if not isinstance(grid, Grid):
        raise ValueError(f"grid must be a Grid, got {type(grid).__name__}")
    inv = np.linalg.inv(grid.affine)
    return [
        _occupancy_box(s.vertices @ inv[:3, :3].T + inv[:3, 3], s.faces, grid.shape)
        for s in heart.structures
    ]


def _paste(box: _Box, out: np.ndarray, value: int | bool) -> None:
    (k0, j0, i0), occ = box
    bz, by, bx = occ.shape
    out[k0 : k0 + bz, j0 : j0 + by, i0 : i0 + bx][occ] = value


def voxelize_structure(mesh: StructureMesh, grid: Grid) -> np.ndarray:
    """Occupancy of one closed mesh.

    Args:
        mesh: closed, consistently oriented triangle mesh in world mm.
        grid: the voxel grid.

    Returns:
        ``[Z, Y, X]`` bool, True where the voxel centre is inside (nonzero winding number).
    """
    inv = np.linalg.inv(grid.affine)
    out = np.zeros(grid.shape, dtype=bool)
    box = _occupancy_box(mesh.vertices @ inv[:3, :3].T + inv[:3, 3], mesh.faces, grid.shape)
    if box is not None:
        _paste(box, out, True)
    return out


def structure_occupancy(heart: HeartMesh, grid: Grid) -> np.ndarray:
    """Occupancy of every structure before overlaps are resolved.

    Args:
        heart: seven closed structure meshes in world mm.
        grid: the voxel grid.

    Returns:
        ``[7, Z, Y, X]`` bool; channel ``n`` is structure index ``n + 1`` (anatomy order).
    """
    out = np.zeros((NUM_STRUCTURES,) + grid.shape, dtype=bool)
    for channel, box in enumerate(_structure_boxes(heart, grid)):
        if box is not None:
            _paste(box, out[channel], True)
    return out


def voxelize(heart: HeartMesh, grid: Grid) -> np.ndarray:
    """Label map of a heart.

    Args:
        heart: seven closed structure meshes in world mm.
        grid: the voxel grid.

    Returns:
        ``[Z, Y, X]`` uint8 labels, 0 background and 1..7 the structure indices of
        :mod:`fedsim_tf.anatomy`; overlaps resolved by :data:`LABEL_PRECEDENCE`.
    """
    boxes = _structure_boxes(heart, grid)
    labels = np.zeros(grid.shape, dtype=np.uint8)
    for name in LABEL_PRECEDENCE:
        index = NAME_TO_INDEX[name]
        box = boxes[index - 1]
        if box is not None:
            _paste(box, labels, index)
    return labels


def heart_mask(heart: HeartMesh, grid: Grid) -> np.ndarray:
    """Binary heart mask (union of all structures, equal to ``voxelize(heart, grid) > 0``).

    Args:
        heart: seven closed structure meshes in world mm.
        grid: the voxel grid.

    Returns:
        ``[Z, Y, X]`` bool.
    """
    mask = np.zeros(grid.shape, dtype=bool)
    for box in _structure_boxes(heart, grid):
        if box is not None:
            _paste(box, mask, True)
    return mask
