// CUDA cone-beam kernels in PYRO-NN's design, with texture objects (cudaTextureObject_t):
// a ray-driven projector (one thread per detector pixel) sampling the volume through a 3D texture
// and a voxel-driven back-projector (one thread per voxel looping over the views) sampling the
// views through a 2D layered texture; plus the exact transposes of both (atomic scatters).
//
// Usable without TensorFlow (the standalone harness cuda_harness.cu) and by the op library when
// TensorFlow is a CUDA build (tf_ops.cc, GOOGLE_CUDA). Data pointers are device pointers; the
// geometry (BatchGeometry, steps, multipliers) is read on the host. Each call allocates its CUDA
// arrays, runs on `stream`, waits for it and frees them.
#ifndef PYRONN_OPS_KERNELS_CUDA_KERNELS_H_
#define PYRONN_OPS_KERNELS_CUDA_KERNELS_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "cone_geometry.h"
#include "cpu_kernels.h"

namespace pyronn {

// How the textures interpolate.
enum class TextureFilter {
  kExact,     // point fetches of the corners, float32 weights: the CPU/XLA kernels' arithmetic
  kHardware,  // the texture unit's linear filtering (PYRO-NN's hardware interpolation, 8-bit weights)
};

// Forward projection (cpu_kernels.h: project) of volume [B, Z, Y, X] into sinogram and applied
// [B, N, H, W]; steps: [G] on the host.
cudaError_t cuda_project(const float* volume, int64_t batch, const VolumeShape& volume_shape,
                         const SinogramShape& sinogram_shape, const BatchGeometry& geometry, const double* steps,
                         bool hardware_interp, bool end_correction_rule, TextureFilter filter, float* sinogram,
                         bool* applied, cudaStream_t stream);

// Transpose of cuda_project for the pattern `applied`; volume [B, Z, Y, X] is overwritten.
cudaError_t cuda_project_adjoint(const float* sinogram, const bool* applied, int64_t batch,
                                 const VolumeShape& volume_shape, const SinogramShape& sinogram_shape,
                                 const BatchGeometry& geometry, const double* steps, bool hardware_interp,
                                 float* volume, cudaStream_t stream);

// FDK-weighted back-projection (cpu_kernels.h: backproject); multipliers: [G] on the host.
cudaError_t cuda_backproject(const float* sinogram, int64_t batch, const VolumeShape& volume_shape,
                             const SinogramShape& sinogram_shape, const BatchGeometry& geometry,
                             const double* multipliers, TextureFilter filter, float* volume, cudaStream_t stream);

// Transpose of cuda_backproject; sinogram [B, N, H, W] is overwritten.
cudaError_t cuda_backproject_adjoint(const float* volume, int64_t batch, const VolumeShape& volume_shape,
                                     const SinogramShape& sinogram_shape, const BatchGeometry& geometry,
                                     const double* multipliers, float* sinogram, cudaStream_t stream);

}  // namespace pyronn

#endif  // PYRONN_OPS_KERNELS_CUDA_KERNELS_H_
