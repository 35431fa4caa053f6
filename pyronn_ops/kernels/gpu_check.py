"""The GPU check of pyronn_ops' CUDA kernels: one script for a GPU machine with nvcc (CUDA 12/13)
and Python with NumPy, no TensorFlow needed.

1. Compiles the standalone harness (``cuda_harness.cu`` + ``cuda_kernels.cu`` + ``cpu_kernels.cc``)
   for the GPU present (``nvcc -arch=native``).
2. Runs the exported cases (``gpu_cases/check_*``, made here by ``export_gpu_cases.py``) and
   compares every output with the float64 reference: the CUDA kernels with exact interpolation
   (the arithmetic of the CPU/XLA kernels; must be <= 1e-5 relative), the CUDA kernels with the
   texture unit's hardware interpolation (PYRO-NN's mode, 8-bit weights: reported), the exact
   transposes, and the CPU kernels on that machine's cores.
3. Times the CUDA kernels on the benchmark geometries (``gpu_cases/bench_*``): forward samples/s
   and back-projection GUPS, exact and hardware, and the CPU kernels on all host threads.
4. Times the XLA programs of the ``"xla"`` backend (exported HLO) on the same GPU with JAX's XLA when
   JAX with GPU support is installed there (best effort: reports why when it cannot).

Prints a table and writes ``gpu_check.json`` into ``$OUT`` (or the build folder). Exit status 1 when
an exact-mode comparison exceeds 1e-5.

Usage: ``python3 pyronn_ops/kernels/gpu_check.py [--repeats 10]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CASES = HERE / "gpu_cases"
TOLERANCE = 1e-5
GATHER_TUNING = "-mtune-ctrl=use_gather_2parts,use_gather_4parts,use_gather"
# harness output -> reference it is compared with, and whether it must meet TOLERANCE
COMPARISONS = {
    "forward": ("forward", True),
    "back": ("back", True),
    "forward_adjoint": ("forward_adjoint", True),
    "back_adjoint": ("back_adjoint", True),
    "cpu_forward": ("forward", True),
    "cpu_back": ("back", True),
    "forward_hw": ("forward", False),
    "back_hw": ("back", False),
}


def read_case(folder: Path) -> dict[str, list[float]]:
    entries = {}
    for line in (folder / "case.txt").read_text().splitlines():
        key, *values = line.split()
        entries[key] = [float(v) for v in values]
    return entries


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True)


def build_harness(build: Path) -> Path:
    """Compile the CPU kernels with the host's C++ compiler (vector gathers where it takes GCC's switch;
    nvcc would split that switch at its commas) and the harness with nvcc for the GPU present."""
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    compiler = shutil.which("g++") or shutil.which("c++") or "c++"
    start = time.perf_counter()
    cpu_object = build / "cpu_kernels.o"
    cpu = [compiler, "-O3", "-std=c++17", "-fPIC", "-c", str(HERE / "cpu_kernels.cc"), "-o", str(cpu_object)]
    completed = _run(cpu[:4] + [GATHER_TUNING] + cpu[4:])
    if completed.returncode != 0:
        completed = _run(cpu)
    if completed.returncode != 0:
        sys.exit(f"{compiler} failed:\n{completed.stderr[-3000:]}")
    binary = build / "cuda_harness"
    sources = [str(HERE / "cuda_harness.cu"), str(HERE / "cuda_kernels.cu"), str(cpu_object)]
    completed = _run([nvcc, "-O3", "-std=c++17", "-arch=native", "-Xcompiler", "-O3", *sources, "-o", str(binary)])
    if completed.returncode != 0:
        sys.exit(f"nvcc failed:\n{completed.stderr[-3000:]}")
    print(f"built {binary} in {time.perf_counter() - start:.1f} s (nvcc -arch=native)")
    return binary


def check_case(harness: Path, folder: Path, work: Path) -> dict[str, float]:
    """Run one exported case and return max |output - reference| / max |reference| per output."""
    target = work / folder.name
    shutil.copytree(folder, target)
    completed = subprocess.run([str(harness), "check", str(target)], capture_output=True, text=True)
    if completed.returncode != 0:
        sys.exit(f"cuda_harness failed on {folder.name}: {completed.stderr.strip()[-2000:]}")
    errors = {}
    for output, (reference, _) in COMPARISONS.items():
        expected = np.fromfile(target / f"ref_{reference}.f32", "<f4").astype(np.float64)
        actual = np.fromfile(target / f"out_{output}.f32", "<f4").astype(np.float64)
        errors[output] = float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))
    return errors


def bench_case(harness: Path, folder: Path, repeats: int) -> dict:
    completed = subprocess.run([str(harness), "bench", str(folder), str(repeats)], capture_output=True, text=True)
    if completed.returncode != 0:
        sys.exit(f"cuda_harness failed on {folder.name}: {completed.stderr.strip()[-2000:]}")
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    figures["case"] = folder.name
    return figures


def time_xla(folder: Path, repeats: int) -> dict:
    """Seconds per call of the exported XLA programs on the GPU through JAX (best effort)."""
    try:
        import jax
        from jax._src.lib import xla_client

        jax.config.update("jax_enable_x64", True)
        device = jax.devices("gpu")[0]
        backend = device.client
    except Exception as error:  # noqa: BLE001 - any failure means "not available here"
        return {"error": f"JAX with a GPU is not available ({type(error).__name__}: {error})"}
    case = read_case(folder)
    views, height, width = (int(v) for v in case["sinogram"])
    depth, rows, columns = (int(v) for v in case["volume"])
    rng = np.random.default_rng(0)
    geometry = [
        np.fromfile(folder / "matrices.f64", "<f8").reshape(1, views, 3, 4),
        np.fromfile(folder / "origin.f64", "<f8").reshape(1, 3),
        np.fromfile(folder / "spacing.f64", "<f8").reshape(1, 3),
        np.asarray(case["steps"], np.float64),
        np.asarray(case["multipliers"], np.float64),
    ]
    inputs = {
        "project": rng.random((1, depth, rows, columns), dtype=np.float32),
        "backproject": rng.random((1, views, height, width), dtype=np.float32),
    }
    result = {}
    for kind, data in inputs.items():
        try:
            module = xla_client._xla.mlir.hlo_to_stablehlo((folder / f"xla_{kind}.hlo.pb").read_bytes())
            options = xla_client.CompileOptions()
            if hasattr(backend, "compile_and_load"):
                executable = backend.compile_and_load(module, xla_client.DeviceList((device,)), options)
            else:
                executable = backend.compile(module, options)
            arguments = [jax.device_put(a, device) for a in (data, *geometry)]

            def call():
                outputs = executable.execute_sharded(arguments).disassemble_into_single_device_arrays()
                for output in outputs:
                    output[0].block_until_ready()

            call()
            start = time.perf_counter()
            for _ in range(repeats):
                call()
            result[f"{kind}_s"] = (time.perf_counter() - start) / repeats
        except Exception as error:  # noqa: BLE001 - report and go on: this step is best effort
            result["error"] = f"{kind}: {type(error).__name__}: {str(error)[:300]}"
            break
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per kernel")
    parser.add_argument("--no-xla", action="store_true", help="skip timing the XLA programs")
    args = parser.parse_args()
    out = Path(os.environ.get("OUT", HERE / "build"))
    out.mkdir(parents=True, exist_ok=True)
    summary = {"checks": {}, "bench": [], "xla": {}}
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        harness = build_harness(work)
        failed = False
        print(f"\naccuracy: max |output - float64 reference| / max |reference| (exact modes must be <= {TOLERANCE:g})")
        for folder in sorted(CASES.glob("check_*")):
            errors = check_case(harness, folder, work)
            summary["checks"][folder.name] = errors
            for output, error in errors.items():
                strict = COMPARISONS[output][1]
                verdict = ("ok" if error <= TOLERANCE else "FAIL") if strict else "hardware interpolation"
                failed |= strict and error > TOLERANCE
                print(f"  {folder.name:<32} {output:<16} {error:10.2e}  {verdict}")
        print("\nspeed (mean of timed calls after a warm-up; CPU kernels on all host threads)")
        for folder in sorted(CASES.glob("bench_*")):
            f = bench_case(harness, folder, args.repeats)
            summary["bench"].append(f)
            xla = {} if args.no_xla else time_xla(folder, args.repeats)
            summary["xla"][folder.name] = xla
            fp = {mode: f["samples"] / f[f"fp_{mode}_s"] / 1e9 for mode in ("exact", "hardware", "cpu")}
            bp = {mode: f["updates"] / f[f"bp_{mode}_s"] / 1e9 for mode in ("exact", "hardware", "cpu")}
            print(f"  {folder.name} on {f['device']} ({f['cpu_threads']} CPU threads):")
            print(f"    forward G samples/s: CUDA exact {fp['exact']:.2f}, CUDA hardware {fp['hardware']:.2f}, CPU {fp['cpu']:.3f}")
            print(f"    back-projection GUPS: CUDA exact {bp['exact']:.1f}, CUDA hardware {bp['hardware']:.1f}, CPU {bp['cpu']:.2f}")
            if "project_s" in xla and "backproject_s" in xla:
                fp_xla, bp_xla = f["samples"] / xla["project_s"] / 1e9, f["updates"] / xla["backproject_s"] / 1e9
                print(f"    XLA programs: forward {fp_xla:.2f} G samples/s, back-projection {bp_xla:.1f} GUPS; "
                      f"CUDA exact / XLA: forward {fp['exact'] / fp_xla:.1f}x, back-projection {bp['exact'] / bp_xla:.1f}x")
            elif xla:
                print(f"    XLA programs: not timed ({xla.get('error', 'incomplete')})")
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {out / 'gpu_check.json'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
