"""Small closed test meshes: a seven-structure toy heart of ellipsoids and a linear toy SSM.

These are real (if crude) inputs for the voxeliser and the shape op, independent of the heart
template: every structure is a closed, outward-wound icosphere scaled to an ellipsoid.
"""

from __future__ import annotations

import numpy as np
import trimesh

from fedsim_tf.anatomy import STRUCTURE_NAMES
from fedsim_tf.shape.mesh import HeartMesh, StructureMesh

# name -> (centre x, y, z mm, semi-axes x, y, z mm); LV blood pool sits inside the myocardium.
TOY_LAYOUT: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "lv_myo": ((-8.0, 4.0, -6.0), (22.0, 18.0, 18.0)),
    "la": ((-6.0, -14.0, 12.0), (12.0, 10.0, 10.0)),
    "lv": ((-8.0, 4.0, -6.0), (16.0, 12.0, 12.0)),
    "ra": ((14.0, -8.0, 10.0), (12.0, 11.0, 11.0)),
    "rv": ((12.0, 12.0, -4.0), (14.0, 10.0, 16.0)),
    "aorta": ((2.0, 0.0, 22.0), (7.0, 7.0, 14.0)),
    "pa": ((8.0, 10.0, 20.0), (7.0, 7.0, 12.0)),
}


def ellipsoid(name: str, centre: tuple[float, float, float], axes: tuple[float, float, float], subdivisions: int = 2) -> StructureMesh:
    """Closed ellipsoid mesh (icosphere scaled per axis), world mm."""
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    return StructureMesh(name, sphere.vertices * np.asarray(axes) + np.asarray(centre), sphere.faces)


def toy_heart(subdivisions: int = 2) -> HeartMesh:
    """Seven overlapping ellipsoids in anatomy order, roughly 70 mm across."""
    return HeartMesh(tuple(ellipsoid(n, *TOY_LAYOUT[n], subdivisions) for n in STRUCTURE_NAMES))


def mesh_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Enclosed volume (mm^3) of a closed outward-wound mesh by the divergence theorem."""
    v0, v1, v2 = (vertices[faces[:, c]] for c in range(3))
    return float(np.einsum("ij,ij->", v0, np.cross(v1, v2)) / 6.0)


def winding_numbers(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Float64 generalised winding number (sum of signed solid angles / 4 pi) of ``(N, 3)``
    points w.r.t. a closed mesh (Van Oosterom-Strackee formula); an independent reference."""
    a, b, c = (vertices[faces[:, n]].T[:, None, :] for n in range(3))  # (3, 1, F) each
    out = np.empty(len(points))
    for s in range(0, len(points), chunk):
        p = points[s : s + chunk].T[:, :, None]  # (3, N, 1)
        ax, ay, az = a - p
        bx, by, bz = b - p
        cx, cy, cz = c - p
        la = np.sqrt(ax * ax + ay * ay + az * az)
        lb = np.sqrt(bx * bx + by * by + bz * bz)
        lc = np.sqrt(cx * cx + cy * cy + cz * cz)
        num = ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)
        ab = ax * bx + ay * by + az * bz
        ac = ax * cx + ay * cy + az * cz
        bc = bx * cx + by * cy + bz * cz
        den = la * lb * lc + ab * lc + ac * lb + bc * la
        out[s : s + chunk] = np.arctan2(num, den).sum(axis=1) / (2.0 * np.pi)
    return out


class ToySSM:
    """Linear shape model over the toy heart: ``mean + sum_m w_m stddev_m mode_m``.

    Modes (unit displacement fields, mm per unit): 0 dilation of the LV (myocardium and blood
    pool) about the LV centre; 1 stretch of the whole heart along z about its centre; 2 shift of
    the right heart (ra, rv) along x; 3 dilation of the atria about their own centres.
    """

    def __init__(self, subdivisions: int = 2, stddevs: tuple[float, ...] = (0.08, 0.06, 3.0, 0.1)) -> None:
        self.mean = toy_heart(subdivisions)
        self.stddevs = np.asarray(stddevs, dtype=np.float64)
        verts = self.mean.stacked_vertices()
        owner = np.repeat(np.arange(len(STRUCTURE_NAMES)), self.mean.vertex_counts)
        names = np.asarray(STRUCTURE_NAMES)[owner]
        lv_centre = np.asarray(TOY_LAYOUT["lv"][0])
        modes = np.zeros((4,) + verts.shape)
        modes[0] = np.where(np.isin(names, ["lv_myo", "lv"])[:, None], verts - lv_centre, 0.0)
        modes[1, :, 2] = verts[:, 2] - verts[:, 2].mean()
        modes[2, :, 0] = np.isin(names, ["ra", "rv"]).astype(float)
        for atrium in ("la", "ra"):
            sel = names == atrium
            modes[3, sel] = verts[sel] - np.asarray(TOY_LAYOUT[atrium][0])
        self.modes = modes[: len(self.stddevs)]

    def instance_vertices(self, weights: np.ndarray) -> np.ndarray:
        """``[M, n_modes]`` weights (std units) -> ``[M, sum V, 3]`` vertices, world mm."""
        weights = np.asarray(weights, dtype=np.float64)
        return self.mean.stacked_vertices() + np.einsum("mk,kvc->mvc", weights * self.stddevs, self.modes)
