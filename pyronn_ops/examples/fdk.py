"""FDK example: Shepp-Logan phantom -> ``cone_projection3d`` -> ``fdk_reconstruction`` -> PNG.

Usage::

    python -m pyronn_ops.examples.fdk --out=fdk.png --size=48 --views=120

An absl app like the fedsim_tf entry points: flags at the top, a bad command line ends with one
``error: ...`` line on stderr and exit code 2, checked before TensorFlow loads (the CT operators are
imported only once the flags are valid).

Writes the central axial, coronal and sagittal slices of the phantom, the reconstruction and their
difference as one grey-scale PNG (rows: phantom, reconstruction, difference; window [-0.1, 0.5]
for the first two, [-0.2, 0.2] for the difference) and prints the error figures.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from typing import TYPE_CHECKING, NoReturn, Sequence

import numpy as np
from absl import app, flags
from PIL import Image
from scipy import ndimage

flags.DEFINE_string("out", "fdk_example.png", "PNG output path (its folder must exist).")
flags.DEFINE_integer("size", 48, "Volume edge in voxels.", lower_bound=16)
flags.DEFINE_integer("views", 120, "Projections over 2 pi.", lower_bound=2)

FLAGS = flags.FLAGS

if TYPE_CHECKING:
    from pyronn_ops.geometry import GeometryCone3D


def example_geometry(size: int, views: int) -> GeometryCone3D:
    """A 96 mm field of view of ``size^3`` voxels; detector ``(1.25 size, 1.75 size)`` pixels covering
    the magnified volume (SID 750 mm, SDD 1200 mm, full ``2 pi`` scan)."""
    from pyronn_ops.geometry import GeometryCone3D
    from pyronn_ops.trajectory import circular_trajectory_3d

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


def fail(message: str) -> NoReturn:
    """End the program with ``error: <message>`` (one line) on stderr and exit code 2."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(2)


def parse_flags(argv: Sequence[str]) -> list[str]:
    """absl flag parsing whose errors are one line and exit code 2."""
    try:
        rest = FLAGS(list(argv))
    except flags.Error as error:
        fail(str(error))
    if len(rest) > 1:
        fail(f"unexpected arguments: {' '.join(rest[1:])} (every input is a --flag)")
    if not os.path.isdir(os.path.dirname(os.path.abspath(FLAGS.out))):
        fail(f"--out={FLAGS.out}: its folder does not exist")
    return rest


def run_example(out: str, size: int, views: int) -> dict[str, float]:
    """Project and reconstruct the phantom, write the PNG; returns the printed figures."""
    from pyronn_ops.fdk import fdk_reconstruction
    from pyronn_ops.ops import cone_projection3d
    from pyronn_ops.phantoms import shepp_logan_3d

    geometry = example_geometry(size, views)
    phantom = shepp_logan_3d(geometry.volume_shape)
    start = time.perf_counter()
    sinogram = cone_projection3d(phantom[None], geometry)
    projected = time.perf_counter()
    reconstruction = fdk_reconstruction(sinogram, geometry).numpy()[0]
    finished = time.perf_counter()

    centre = size // 2
    slab = slice(centre - 4, centre + 4)
    figures = {
        "rmse_central_slab": float(np.sqrt(np.mean((reconstruction[slab] - phantom[slab]) ** 2))),
        "mean_brain_0.2": float(reconstruction[brain_mask(phantom)].mean()),
        "projection_s": projected - start,
        "fdk_s": finished - projected,
    }
    write_png(out, phantom, reconstruction)
    print(f"geometry: {geometry}")
    for name, value in figures.items():
        print(f"{name}: {value:.4f}")
    print(f"wrote {out}")
    return figures


def main(argv: Sequence[str]) -> None:
    del argv
    run_example(FLAGS.out, FLAGS.size, FLAGS.views)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
