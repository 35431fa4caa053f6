"""FDK example: Shepp-Logan phantom -> ``cone_projection3d`` -> ``fdk_reconstruction`` -> PNG.

Usage::

    python -m pyronn_ops.examples.fdk --out fdk.png --size 48 --views 120

Writes the central axial, coronal and sagittal slices of the phantom, the reconstruction and their
difference as one grey-scale PNG (rows: phantom, reconstruction, difference; window [-0.1, 0.5]
for the first two, [-0.2, 0.2] for the difference) and prints the error figures.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from typing import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from pyronn_ops.fdk import fdk_reconstruction
from pyronn_ops.geometry import GeometryCone3D
from pyronn_ops.ops import cone_projection3d
from pyronn_ops.phantoms import shepp_logan_3d
from pyronn_ops.trajectory import circular_trajectory_3d


def example_geometry(size: int, views: int) -> GeometryCone3D:
    """A 96 mm field of view of ``size^3`` voxels; detector ``(1.25 size, 1.75 size)`` pixels covering
    the magnified volume (SID 750 mm, SDD 1200 mm, full ``2 pi`` scan)."""
    voxel = 96.0 / size
    pixel = 2.0 * 64 / size
    detector = (int(round(1.25 * size)), int(round(1.75 * size)))
    geometry = GeometryCone3D((size,) * 3, (voxel,) * 3, detector, (pixel, pixel), views, 2 * math.pi, 1200.0, 750.0)
    geometry.set_trajectory(circular_trajectory_3d(geometry))
    return geometry


def brain_mask(phantom: np.ndarray) -> np.ndarray:
    """Voxels of the central 8 slices whose whole 5x5x5 neighbourhood is the 0.2 brain region."""
    low = ndimage.minimum_filter(phantom, size=5, mode="constant", cval=0.0)
    high = ndimage.maximum_filter(phantom, size=5, mode="constant", cval=0.0)
    mask = (np.abs(low - 0.2) < 1e-6) & (np.abs(high - 0.2) < 1e-6)
    centre = phantom.shape[0] // 2
    mask[: centre - 4] = False
    mask[centre + 4 :] = False
    return mask


def _tile(volume: np.ndarray, low: float, high: float) -> np.ndarray:
    """Central axial, coronal and sagittal slices side by side as uint8, ``[low, high]`` -> [0, 255]."""
    z, y, x = (n // 2 for n in volume.shape)
    slices = [volume[z], volume[::-1, y, :], volume[::-1, :, x]]
    height = max(s.shape[0] for s in slices)
    padded = [np.pad(s, ((0, height - s.shape[0]), (0, 1)), constant_values=low) for s in slices]
    scaled = (np.concatenate(padded, axis=1) - low) / (high - low)
    return (np.clip(scaled, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def write_png(path: str, phantom: np.ndarray, reconstruction: np.ndarray) -> None:
    """Write the 3 x 3 slice panel atomically (temporary file in the target folder, then rename)."""
    panel = np.concatenate(
        [_tile(phantom, -0.1, 0.5), _tile(reconstruction, -0.1, 0.5), _tile(reconstruction - phantom, -0.2, 0.2)],
        axis=0,
    )
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".fdk-", suffix=".png", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            Image.fromarray(panel, mode="L").save(stream, format="PNG")
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run the example; returns the printed figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="fdk_example.png", help="PNG output path")
    parser.add_argument("--size", type=int, default=48, help="volume edge in voxels (>= 16)")
    parser.add_argument("--views", type=int, default=120, help="projections over 2 pi")
    args = parser.parse_args(argv)
    if args.size < 16:
        parser.error(f"--size must be >= 16, got {args.size}")
    if args.views < 2:
        parser.error(f"--views must be >= 2, got {args.views}")
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        parser.error(f"--out: folder of {args.out} does not exist")

    geometry = example_geometry(args.size, args.views)
    phantom = shepp_logan_3d(geometry.volume_shape)
    start = time.perf_counter()
    sinogram = cone_projection3d(phantom[None], geometry)
    projected = time.perf_counter()
    reconstruction = fdk_reconstruction(sinogram, geometry).numpy()[0]
    finished = time.perf_counter()

    centre = args.size // 2
    slab = slice(centre - 4, centre + 4)
    figures = {
        "rmse_central_slab": float(np.sqrt(np.mean((reconstruction[slab] - phantom[slab]) ** 2))),
        "mean_brain_0.2": float(reconstruction[brain_mask(phantom)].mean()),
        "projection_s": projected - start,
        "fdk_s": finished - projected,
    }
    write_png(args.out, phantom, reconstruction)
    print(f"geometry: {geometry}")
    for name, value in figures.items():
        print(f"{name}: {value:.4f}")
    print(f"wrote {args.out}")
    return figures


if __name__ == "__main__":
    main()
