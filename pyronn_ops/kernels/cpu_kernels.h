// Multi-threaded CPU cone-beam kernels (no TensorFlow dependency): the ray-driven trilinear
// projector, the voxel-driven FDK-weighted back-projector and the exact transposes of both.
//
// They compute exactly what pyronn_ops/projection.py and pyronn_ops/backprojection.py compute
// (the same float64 set-up, float32 sampling, clamping, zero padding and quadrature). Work is
// split into units that each write their own outputs, and every unit's arithmetic is fixed by the
// problem, never by the thread count: results are bit-identical for any number of threads.
#ifndef PYRONN_OPS_KERNELS_CPU_KERNELS_H_
#define PYRONN_OPS_KERNELS_CPU_KERNELS_H_

#include <cstdint>
#include <functional>

#include "cone_geometry.h"

namespace pyronn {

// Runs body(begin, end) over disjoint ranges covering [0, total), possibly concurrently;
// cost_per_unit is a rough cost of one unit in CPU cycles (a sharding hint).
using ParallelFor =
    std::function<void(int64_t total, int64_t cost_per_unit, const std::function<void(int64_t, int64_t)>& body)>;

// Geometry of a batch: G groups (G = 1: shared by the batch, G = B: one per batch element).
struct BatchGeometry {
  const double* matrices;  // [G, N, 3, 4] world mm -> homogeneous pixel indices
  const double* origin;    // [G, 3] centre of voxel (0, 0, 0), (x, y, z) mm
  const double* spacing;   // [G, 3] voxel size, (x, y, z) mm
  int64_t groups;
};

// Scratch sizes (in elements) the kernels need; the caller allocates them (TensorFlow's
// allocator in the op), so no kernel allocates memory itself.
int64_t projection_scratch_floats(int64_t batch, const VolumeShape& volume);
int64_t projection_adjoint_scratch_floats(int64_t batch, const VolumeShape& volume, const SinogramShape& sinogram);
int64_t backprojection_scratch_floats(int64_t batch, const VolumeShape& volume, const SinogramShape& sinogram,
                                      int64_t groups);
int64_t backprojection_adjoint_scratch_floats(int64_t batch, const VolumeShape& volume,
                                              const SinogramShape& sinogram, int64_t groups);

// Forward projection, kernel steps 1-8 (pyronn_ops.projection.project).
// volume: [B, Z, Y, X] value per mm; steps: [G] sampling step (index units).
// sinogram: [B, N, H, W] line integrals (value * mm); applied: [B, N, H, W] end correction used.
void project(const float* volume, int64_t batch, const VolumeShape& volume_shape,
             const SinogramShape& sinogram_shape, const BatchGeometry& geometry, const double* steps,
             bool hardware_interp, bool end_correction_rule, float* scratch, float* sinogram, bool* applied,
             const ParallelFor& parallel_for);

// Exact transpose of project() for the end-correction pattern `applied` [B, N, H, W].
// volume (output): [B, Z, Y, X].
void project_adjoint(const float* sinogram, const bool* applied, int64_t batch, const VolumeShape& volume_shape,
                     const SinogramShape& sinogram_shape, const BatchGeometry& geometry, const double* steps,
                     bool hardware_interp, float* scratch, float* volume, const ParallelFor& parallel_for);

// FDK-weighted back-projection (pyronn_ops.backprojection.backproject): for every voxel centre
// and view, bilinear sample at (a/w, b/w), zero outside, accumulate q / w^2; times multiplier[g].
// sinogram: [B, N, H, W]; volume (output): [B, Z, Y, X].
void backproject(const float* sinogram, int64_t batch, const VolumeShape& volume_shape,
                 const SinogramShape& sinogram_shape, const BatchGeometry& geometry, const double* multipliers,
                 float* scratch, float* volume, const ParallelFor& parallel_for);

// Exact transpose of backproject(). volume: [B, Z, Y, X]; sinogram (output): [B, N, H, W].
void backproject_adjoint(const float* volume, int64_t batch, const VolumeShape& volume_shape,
                         const SinogramShape& sinogram_shape, const BatchGeometry& geometry,
                         const double* multipliers, float* scratch, float* sinogram,
                         const ParallelFor& parallel_for);

}  // namespace pyronn

#endif  // PYRONN_OPS_KERNELS_CPU_KERNELS_H_
