"""Seven-parameter similarity pose (rotation, translation, isotropic log-scale) of a heart mesh.

Parameter vector ``params`` (7,), in this order:

* ``params[0:3]``: rotation vector ``r`` (axis-angle) in radians, expressed in the world RAS+
  axes (x, y, z): a right-handed rotation by the angle ``|r|`` about the unit axis ``r / |r|``
  (``R = exp([r]_x)``, Rodrigues' formula). ``r = 0`` is the identity.
* ``params[3:6]``: translation ``t`` in mm along world x, y, z (RAS+).
* ``params[6]``: log of the isotropic scale factor ``s = exp(params[6])`` (0 means unscaled).

A point ``x`` (world mm) is mapped to ``x' = c + t + s R (x - c)``, i.e. rotated and scaled about
a fixed centre ``c`` (world mm) and then translated. For the parameters to mean the same thing for
every instance of a statistical shape model, ``c`` must be fixed per model, not per instance: the
shape op uses the centre of the model's mean shape (:meth:`HeartMesh.centre` of ``ssm.mean``).
"""

from __future__ import annotations

import numpy as np

from fedsim_tf.shape.mesh import HeartMesh

NUM_POSE_PARAMS = 7


def _check_params(params: np.ndarray) -> np.ndarray:
    params = np.asarray(params, dtype=np.float64)
    if params.ndim < 1 or params.shape[-1] != NUM_POSE_PARAMS:
        raise ValueError(f"pose params must have last axis of size 7, got shape {params.shape}")
    if not np.all(np.isfinite(params)):
        raise ValueError("pose params must be finite")
    return params


def _check_centre(centre: np.ndarray) -> np.ndarray:
    centre = np.asarray(centre, dtype=np.float64)
    if centre.shape != (3,) or not np.all(np.isfinite(centre)):
        raise ValueError(f"pose centre must be a finite (3,) point in mm, got shape {centre.shape}")
    return centre


def rotation_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rotation matrices from rotation vectors (Rodrigues' formula).

    Args:
        rotvec: ``(..., 3)`` rotation vectors in radians (world x, y, z axes).

    Returns:
        ``(..., 3, 3)`` float64 proper rotation matrices ``R`` acting on column vectors.
    """
    r = np.asarray(rotvec, dtype=np.float64)
    theta2 = np.sum(r * r, axis=-1)[..., None, None]
    theta = np.sqrt(theta2)
    small = theta2 < 1e-8
    safe = np.where(small, 1.0, theta)
    # sin(t)/t and (1 - cos t)/t^2, with Taylor series where t is tiny (error < 1e-20 there).
    a = np.where(small, 1.0 - theta2 / 6.0 + theta2**2 / 120.0, np.sin(safe) / safe)
    b = np.where(small, 0.5 - theta2 / 24.0 + theta2**2 / 720.0, (1.0 - np.cos(safe)) / safe**2)
    zero = np.zeros(r.shape[:-1])
    k = np.stack(
        [
            np.stack([zero, -r[..., 2], r[..., 1]], axis=-1),
            np.stack([r[..., 2], zero, -r[..., 0]], axis=-1),
            np.stack([-r[..., 1], r[..., 0], zero], axis=-1),
        ],
        axis=-2,
    )
    return np.eye(3) + a * k + b * (k @ k)


def rotation_vector(rot: np.ndarray) -> np.ndarray:
    """Rotation vector of a single rotation matrix (inverse of :func:`rotation_matrix`).

    Uses the unit quaternion (Shepperd's method) so that it is accurate for every angle in
    ``[0, pi)``; at exactly ``pi`` either of the two equivalent vectors is returned.

    Args:
        rot: ``(3, 3)`` proper rotation matrix.

    Returns:
        ``(3,)`` rotation vector in radians with norm in ``[0, pi]``.
    """
    m = np.asarray(rot, dtype=np.float64)
    diag = np.array([np.trace(m), m[0, 0], m[1, 1], m[2, 2]])
    best = int(np.argmax(diag))
    if best == 0:
        w = 0.5 * np.sqrt(1.0 + diag[0])
        v = np.array([m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]]) / (4.0 * w)
    else:
        i = best - 1
        j, k = (i + 1) % 3, (i + 2) % 3
        v = np.empty(3)
        v[i] = 0.5 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        v[j] = (m[j, i] + m[i, j]) / (4.0 * v[i])
        v[k] = (m[k, i] + m[i, k]) / (4.0 * v[i])
        w = (m[k, j] - m[j, k]) / (4.0 * v[i])
    if w < 0.0:
        w, v = -w, -v
    norm = float(np.linalg.norm(v))
    if norm < 1e-12:
        return 2.0 * v / w
    return 2.0 * np.arctan2(norm, w) / norm * v


def pose_matrix(params: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Homogeneous similarity matrices of pose parameters.

    Args:
        params: ``(..., 7)`` pose parameters (rotation vector rad, translation mm, log-scale);
            see the module docstring.
        centre: ``(3,)`` world x, y, z in mm, the fixed centre of rotation and scaling.

    Returns:
        ``(..., 4, 4)`` float64 matrices mapping homogeneous world points (column vectors) to
        posed world points: ``[[s R, c + t - s R c], [0, 0, 0, 1]]``.
    """
    params = _check_params(params)
    centre = _check_centre(centre)
    linear = np.exp(params[..., 6])[..., None, None] * rotation_matrix(params[..., 0:3])
    offset = centre + params[..., 3:6] - linear @ centre
    out = np.zeros(params.shape[:-1] + (4, 4))
    out[..., :3, :3] = linear
    out[..., :3, 3] = offset
    out[..., 3, 3] = 1.0
    return out


def params_from_matrix(matrix: np.ndarray, centre: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Pose parameters of a similarity matrix (inverse of :func:`pose_matrix`).

    Args:
        matrix: ``(4, 4)`` homogeneous similarity (rotation times positive isotropic scale,
            plus translation) in world mm.
        centre: ``(3,)`` world x, y, z in mm, the centre the parameters refer to.
        tol: tolerance on ``|R^T R - I|`` and on the last row, to reject shears and
            anisotropic scales.

    Returns:
        ``(7,)`` float64 pose parameters with the rotation angle in ``[0, pi]``.

    Raises:
        ValueError: if ``matrix`` is not a 4x4 proper similarity.
    """
    m = np.asarray(matrix, dtype=np.float64)
    centre = _check_centre(centre)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise ValueError(f"pose matrix must be a finite 4x4 array, got shape {m.shape}")
    if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0], atol=tol):
        raise ValueError(f"pose matrix last row must be [0, 0, 0, 1], got {m[3]}")
    linear = m[:3, :3]
    det = float(np.linalg.det(linear))
    if det <= 0.0:
        raise ValueError(f"pose matrix must have a positive determinant (no reflection), got {det}")
    scale = np.cbrt(det)
    rot = linear / scale
    if np.max(np.abs(rot.T @ rot - np.eye(3))) > tol:
        raise ValueError("pose matrix is not a similarity (shear or anisotropic scale)")
    translation = m[:3, 3] - centre + linear @ centre
    return np.concatenate([rotation_vector(rot), translation, [np.log(scale)]])


def pose_points(points: np.ndarray, params: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Apply poses to point sets, broadcasting over leading axes.

    Args:
        points: ``(..., V, 3)`` world x, y, z in mm.
        params: ``(..., 7)`` pose parameters, leading axes broadcast against those of ``points``.
        centre: ``(3,)`` world mm, the fixed centre of rotation and scaling.

    Returns:
        ``(..., V, 3)`` posed points in world mm.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim < 2 or points.shape[-1] != 3:
        raise ValueError(f"points must be (..., V, 3), got shape {points.shape}")
    mat = pose_matrix(params, centre)
    return points @ np.swapaxes(mat[..., :3, :3], -1, -2) + mat[..., None, :3, 3]


def apply_pose(heart: HeartMesh, params: np.ndarray, centre: np.ndarray) -> HeartMesh:
    """Posed copy of a heart mesh (same topology).

    Args:
        heart: the heart in world mm.
        params: ``(7,)`` pose parameters (see the module docstring).
        centre: ``(3,)`` world mm centre of rotation and scaling, e.g. ``ssm.mean.centre()``.

    Returns:
        The posed :class:`HeartMesh`.
    """
    params = _check_params(params)
    if params.shape != (NUM_POSE_PARAMS,):
        raise ValueError(f"apply_pose takes a single (7,) params vector, got shape {params.shape}")
    return heart.with_stacked_vertices(pose_points(heart.stacked_vertices(), params, centre))
