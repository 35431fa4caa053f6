"""Export the GPU check's cases: small volumes and geometries with float64 reference results.

Writes ``pyronn_ops/kernels/gpu_cases/`` (about 1 MB, in the working tree so that it travels to a GPU
machine with it), one folder per case in the format ``cuda_harness.cu`` reads (``case.txt`` plus
raw little-endian arrays) and the references ``ref_<name>.f32`` (float64 results of
:mod:`pyronn_ops.reference`, stored as float32) that ``gpu_check.py`` compares with:

* ``check_*``: anisotropic voxels, non-square detectors, short and full scans, both clip boxes,
  steps 0.5 / 0.7 / 1.0, a batch of two different scanners; forward, back-projection and both
  exact transposes;
* ``bench_128`` / ``bench_256``: the geometries of ``bench/projector.py`` (128^3, 180 views of
  128^2) and a larger one (256^3, 360 views of 256^2); only geometry, the harness makes the data.
  With them, the XLA programs of the ``"xla"`` backend's projection and back-projection for that
  geometry (``xla_project.hlo.pb`` / ``xla_backproject.hlo.pb``, serialized HloModuleProtos, the
  programs TensorFlow compiles), so that the GPU machine can time them with JAX's XLA.

Usage (here, with TensorFlow): ``.venv/bin/python pyronn_ops/kernels/export_gpu_cases.py``
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pyronn_ops import (  # noqa: E402
    GeometryCone3D,
    circular_trajectory_3d,
    reference_backprojection,
    reference_backprojection_adjoint,
    reference_projection,
    reference_projection_adjoint,
)

OUT = Path(__file__).resolve().parent / "gpu_cases"


def _scanner(volume_shape, volume_spacing, detector_shape, detector_spacing, views, angular_range, sdd, sid, convention):
    geometry = GeometryCone3D(volume_shape, volume_spacing, detector_shape, detector_spacing, views, angular_range, sdd, sid)
    geometry.set_trajectory(circular_trajectory_3d(geometry, convention, dtype=np.float64))
    return geometry


def _write_geometry(folder: Path, geometries: list[GeometryCone3D], batch: int, step: float, hardware_interp: bool,
                    end_correction_rule: bool) -> None:
    folder.mkdir(parents=True)
    first = geometries[0]
    lines = [
        f"batch {batch}",
        f"groups {len(geometries)}",
        "volume " + " ".join(map(str, first.volume_shape)),
        "sinogram " + " ".join(map(str, first.sinogram_shape)),
        f"hardware_interp {int(hardware_interp)}",
        f"end_correction_rule {int(end_correction_rule)}",
        "steps " + " ".join(repr(float(step)) for _ in geometries),
        "multipliers " + " ".join(repr(float(g.projection_multiplier)) for g in geometries),
    ]
    (folder / "case.txt").write_text("\n".join(lines) + "\n")
    np.stack([g.projection_matrices_float64 for g in geometries]).astype("<f8").tofile(folder / "matrices.f64")
    np.stack([g.volume_origin[::-1] for g in geometries]).astype("<f8").tofile(folder / "origin.f64")
    np.stack([g.volume_spacing[::-1] for g in geometries]).astype("<f8").tofile(folder / "spacing.f64")


def export_check(name: str, geometries: list[GeometryCone3D], step: float, hardware_interp: bool,
                 end_correction_rule: bool, signed: bool, seed: int) -> None:
    """One check case: one batch element per geometry, random inputs, float64 references."""
    folder = OUT / name
    _write_geometry(folder, geometries, len(geometries), step, hardware_interp, end_correction_rule)
    rng = np.random.default_rng(seed)
    shape = geometries[0].volume_shape
    volume = (rng.standard_normal((len(geometries), *shape)) if signed else rng.random((len(geometries), *shape)))
    volume = volume.astype(np.float32)
    sinogram = rng.standard_normal((len(geometries), *geometries[0].sinogram_shape)).astype(np.float32)
    volume.astype("<f4").tofile(folder / "volume.f32")
    sinogram.astype("<f4").tofile(folder / "sinogram.f32")
    references = {"forward": [], "back": [], "forward_adjoint": [], "back_adjoint": []}
    for index, g in enumerate(geometries):
        x, y = volume[index].astype(np.float64), sinogram[index].astype(np.float64)
        references["forward"].append(reference_projection(x, g, hardware_interp, step, end_correction_rule))
        references["back"].append(reference_backprojection(y, g))
        references["forward_adjoint"].append(
            reference_projection_adjoint(y, g, hardware_interp, step, end_correction_rule, volume=x)
        )
        references["back_adjoint"].append(reference_backprojection_adjoint(x, g))
    for key, values in references.items():
        np.stack(values).astype("<f4").tofile(folder / f"ref_{key}.f32")


def export_bench(name: str, size: int, detector: int, views: int) -> None:
    """A benchmark geometry of bench/projector.py's family (128 mm field of view, 256 mm detector)
    and the XLA programs of its projection and back-projection."""
    import tensorflow as tf

    from pyronn_ops.operator_setup import DEFAULT_CHUNK_ELEMENTS, resolve_setup
    from pyronn_ops.ops import compiled_kernel

    geometry = _scanner((size,) * 3, (128.0 / size,) * 3, (detector, detector), (256.0 / detector,) * 2, views,
                        2 * np.pi, 1200.0, 750.0, "pyronn-0.1")
    _write_geometry(OUT / name, [geometry], 1, 1.0, True, True)
    setup = resolve_setup(geometry, None, True, True, None, DEFAULT_CHUNK_ELEMENTS)
    arguments = (setup.matrices, setup.origin_xyz, setup.spacing_xyz, setup.step, setup.multiplier)
    for kind, data_shape in (("project", geometry.volume_shape), ("backproject", geometry.sinogram_shape)):
        program = compiled_kernel(kind, setup).experimental_get_compiler_ir(tf.zeros((1, *data_shape)), *arguments)
        (OUT / name / f"xla_{kind}.hlo.pb").write_bytes(program(stage="hlo_serialized"))


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    anisotropic = _scanner((20, 24, 28), (1.0, 1.2, 0.9), (24, 32), (2.0, 1.5), 12, (0.3, 2.5), 600.0, 400.0, "pyronn-0.1")
    other = _scanner((20, 24, 28), (0.8, 1.0, 1.1), (24, 32), (1.8, 1.6), 12, (1.0, 4.0), 700.0, 450.0, "pyronn-1.x")
    full_scan = _scanner((18, 22, 20), (1.1, 0.9, 1.0), (20, 26), (1.6, 1.4), 16, 2 * np.pi, 500.0, 320.0, "pyronn-1.x")
    export_check("check_batch2_hardware_step07", [anisotropic, other], 0.7, True, True, signed=False, seed=1)
    export_check("check_software_step05_linear", [anisotropic], 0.5, False, False, signed=True, seed=2)
    export_check("check_full_scan_step10", [full_scan], 1.0, True, True, signed=False, seed=3)
    export_bench("bench_128", 128, 128, 180)
    export_bench("bench_256", 256, 256, 360)
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
