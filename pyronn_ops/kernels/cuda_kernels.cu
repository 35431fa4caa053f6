// CUDA cone-beam kernels; see cuda_kernels.h. The per-ray and per-voxel arithmetic comes from
// cone_geometry.h, shared with the CPU kernels, so both compute the same quantities.
#include "cuda_kernels.h"

#include <vector>

namespace pyronn {
namespace {

#define PYRONN_CUDA_TRY(expression)                 \
  do {                                              \
    const cudaError_t status_ = (expression);       \
    if (status_ != cudaSuccess) return status_;     \
  } while (0)

// Device memory, a CUDA array and its texture object, freed when the holder goes out of scope.
struct DeviceMemory {
  void* pointer = nullptr;
  ~DeviceMemory() {
    if (pointer != nullptr) cudaFree(pointer);
  }
};

struct TextureArray {
  cudaArray_t array = nullptr;
  cudaTextureObject_t texture = 0;
  ~TextureArray() {
    if (texture != 0) cudaDestroyTextureObject(texture);
    if (array != nullptr) cudaFreeArray(array);
  }
};

// Waits for the stream when it goes out of scope: declared after the holders above, it is
// destroyed first, so nothing is freed while a kernel may still read it.
struct StreamWait {
  cudaStream_t stream;
  ~StreamWait() { cudaStreamSynchronize(stream); }
};

struct Box {
  double size[3];  // (x, y, z) voxel counts
};

// A [depth, height, width] float texture with zero outside: a 3D array (volume) or a 2D layered
// array of `depth` layers (views). Copies `data` (device memory, width fastest) into it.
cudaError_t make_texture(const float* data, int64_t depth, int64_t height, int64_t width, bool layered,
                         TextureFilter filter, cudaStream_t stream, TextureArray* out) {
  const cudaChannelFormatDesc format = cudaCreateChannelDesc<float>();
  const cudaExtent extent = make_cudaExtent(width, height, depth);
  PYRONN_CUDA_TRY(cudaMalloc3DArray(&out->array, &format, extent, layered ? cudaArrayLayered : 0));
  cudaMemcpy3DParms copy = {};
  copy.srcPtr = make_cudaPitchedPtr(const_cast<float*>(data), width * sizeof(float), width, height);
  copy.dstArray = out->array;
  copy.extent = extent;
  copy.kind = cudaMemcpyDeviceToDevice;
  PYRONN_CUDA_TRY(cudaMemcpy3DAsync(&copy, stream));
  cudaResourceDesc resource = {};
  resource.resType = cudaResourceTypeArray;
  resource.res.array.array = out->array;
  cudaTextureDesc description = {};
  for (int axis = 0; axis < 3; ++axis) description.addressMode[axis] = cudaAddressModeBorder;  // 0 outside
  description.filterMode = filter == TextureFilter::kHardware ? cudaFilterModeLinear : cudaFilterModePoint;
  description.readMode = cudaReadModeElementType;
  description.normalizedCoords = 0;
  return cudaCreateTextureObject(&out->texture, &resource, &description, nullptr);
}

// Trilinear value at index-space point (x, y, z) (voxel centres at integers; texel i spans
// [i, i + 1) in texture coordinates, hence the + 0.5).
template <TextureFilter kFilter>
__device__ float sample_volume(cudaTextureObject_t volume, const Box& box, float x, float y, float z) {
  if (kFilter == TextureFilter::kHardware) return tex3D<float>(volume, x + 0.5f, y + 0.5f, z + 0.5f);
  x = clamp_coordinate(x, -1.0f, static_cast<float>(box.size[0]));
  y = clamp_coordinate(y, -1.0f, static_cast<float>(box.size[1]));
  z = clamp_coordinate(z, -1.0f, static_cast<float>(box.size[2]));
  const float x0 = floorf(x), y0 = floorf(y), z0 = floorf(z);
  const float fx = x - x0, fy = y - y0, fz = z - z0;
  const float tx = x0 + 0.5f, ty = y0 + 0.5f, tz = z0 + 0.5f;
  const float c000 = tex3D<float>(volume, tx, ty, tz), c001 = tex3D<float>(volume, tx + 1, ty, tz);
  const float c010 = tex3D<float>(volume, tx, ty + 1, tz), c011 = tex3D<float>(volume, tx + 1, ty + 1, tz);
  const float c100 = tex3D<float>(volume, tx, ty, tz + 1), c101 = tex3D<float>(volume, tx + 1, ty, tz + 1);
  const float c110 = tex3D<float>(volume, tx, ty + 1, tz + 1), c111 = tex3D<float>(volume, tx + 1, ty + 1, tz + 1);
  const float c00 = c000 + fx * (c001 - c000), c01 = c010 + fx * (c011 - c010);
  const float c10 = c100 + fx * (c101 - c100), c11 = c110 + fx * (c111 - c110);
  const float c0 = c00 + fy * (c01 - c00), c1 = c10 + fy * (c11 - c10);
  return c0 + fz * (c1 - c0);
}

// Bilinear value of view `layer` at detector point (u, v) in pixel indices.
template <TextureFilter kFilter>
__device__ float sample_view(cudaTextureObject_t views, int layer, float u, float v, float width, float height) {
  if (kFilter == TextureFilter::kHardware) return tex2DLayered<float>(views, u + 0.5f, v + 0.5f, layer);
  u = clamp_coordinate(u, -1.0f, width);
  v = clamp_coordinate(v, -1.0f, height);
  const float u0 = floorf(u), v0 = floorf(v);
  const float fu = u - u0, fv = v - v0;
  const float tu = u0 + 0.5f, tv = v0 + 0.5f;
  const float p00 = tex2DLayered<float>(views, tu, tv, layer), p01 = tex2DLayered<float>(views, tu + 1, tv, layer);
  const float p10 = tex2DLayered<float>(views, tu, tv + 1, layer);
  const float p11 = tex2DLayered<float>(views, tu + 1, tv + 1, layer);
  const float top = p00 + fu * (p01 - p00), bottom = p10 + fu * (p11 - p10);
  return top + fv * (bottom - top);
}

__device__ float3 ray_point(const ClippedRay& ray, float distance) {
  return make_float3(ray.entry[0] + distance * ray.direction[0], ray.entry[1] + distance * ray.direction[1],
                     ray.entry[2] + distance * ray.direction[2]);
}

// One thread per ray of one batch element: ray (u, v) of view blockIdx.z.
template <TextureFilter kFilter>
__global__ void project_kernel(cudaTextureObject_t volume, const RayFrame* frames, Box box, SinogramShape shape,
                               float step, bool hardware_interp, bool end_correction_rule, float* sinogram,
                               bool* applied) {
  const int64_t u = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t v = blockIdx.y * static_cast<int64_t>(blockDim.y) + threadIdx.y;
  const int64_t p = blockIdx.z;
  if (u >= shape.w || v >= shape.h) return;
  const ClippedRay ray = clip_ray(frames[p], static_cast<double>(u), static_cast<double>(v), box.size, hardware_interp);
  const int64_t count = sample_count(ray.chord, step);
  float sum = 0.0f, first = 0.0f, last = 0.0f;
  for (int64_t k = 0; k < count; ++k) {
    const float3 point = ray_point(ray, step * (static_cast<float>(k) + 0.5f));
    last = sample_volume<kFilter>(volume, box, point.x, point.y, point.z);
    if (k == 0) first = last;
    sum += last;
  }
  const float3 exit = ray_point(ray, ray.chord);
  const float f_exit = count > 0 ? sample_volume<kFilter>(volume, box, exit.x, exit.y, exit.z) : 0.0f;
  const RayValue result =
      ray_value(sum, first, last, f_exit, ray.chord, step, count, ray.mm_per_index, end_correction_rule);
  const int64_t index = (p * shape.h + v) * shape.w + u;
  sinogram[index] = result.value;
  applied[index] = result.corrected;
}

// Adds value * trilinear weights at index-space point (x, y, z) to the volume (corners outside dropped).
__device__ void scatter_trilinear(float* volume, const VolumeShape& shape, const Box& box, float3 point, float value) {
  const float x = clamp_coordinate(point.x, -1.0f, static_cast<float>(box.size[0]));
  const float y = clamp_coordinate(point.y, -1.0f, static_cast<float>(box.size[1]));
  const float z = clamp_coordinate(point.z, -1.0f, static_cast<float>(box.size[2]));
  const float x0 = floorf(x), y0 = floorf(y), z0 = floorf(z);
  const float f[3] = {x - x0, y - y0, z - z0};
  const int64_t base[3] = {static_cast<int64_t>(x0), static_cast<int64_t>(y0), static_cast<int64_t>(z0)};
  for (int corner = 0; corner < 8; ++corner) {
    const int dx = corner & 1, dy = (corner >> 1) & 1, dz = corner >> 2;
    const int64_t i = base[0] + dx, j = base[1] + dy, k = base[2] + dz;
    if (i < 0 || j < 0 || k < 0 || i >= shape.x || j >= shape.y || k >= shape.z) continue;
    const float weight = (dz ? f[2] : 1.0f - f[2]) * (dy ? f[1] : 1.0f - f[1]) * (dx ? f[0] : 1.0f - f[0]);
    atomicAdd(volume + (k * shape.y + j) * shape.x + i, value * weight);
  }
}

__global__ void project_adjoint_kernel(const RayFrame* frames, Box box, VolumeShape volume_shape, SinogramShape shape,
                                       float step, bool hardware_interp, const float* sinogram, const bool* applied,
                                       float* volume) {
  const int64_t u = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t v = blockIdx.y * static_cast<int64_t>(blockDim.y) + threadIdx.y;
  const int64_t p = blockIdx.z;
  if (u >= shape.w || v >= shape.h) return;
  const int64_t index = (p * shape.h + v) * shape.w + u;
  const ClippedRay ray = clip_ray(frames[p], static_cast<double>(u), static_cast<double>(v), box.size, hardware_interp);
  const int64_t count = sample_count(ray.chord, step);
  if (count == 0) return;
  const AdjointCoefficients c =
      adjoint_coefficients(sinogram[index], ray.chord, step, count, ray.mm_per_index, applied[index]);
  for (int64_t k = 0; k < count; ++k) {
    const float coefficient = (k == 0 ? 0.5f * c.interior : c.interior) + (k == count - 1 ? c.last_extra : 0.0f);
    scatter_trilinear(volume, volume_shape, box, ray_point(ray, step * (static_cast<float>(k) + 0.5f)), coefficient);
  }
  if (c.exit != 0.0f) scatter_trilinear(volume, volume_shape, box, ray_point(ray, ray.chord), c.exit);
}

struct VoxelGrid {
  double origin[3], spacing[3];  // (x, y, z) mm
  VolumeShape shape;
};

// Rows (a, b, w) of P (X, 1) of voxel (x, y, z) for the view with matrix p.
__device__ float3 project_rows(const double* p, double x_mm, double y_mm, double z_mm) {
  return make_float3(row_term_x(p, 0, x_mm) + row_term_yz(p, 0, y_mm, z_mm),
                     row_term_x(p, 1, x_mm) + row_term_yz(p, 1, y_mm, z_mm),
                     row_term_x(p, 2, x_mm) + row_term_yz(p, 2, y_mm, z_mm));
}

// One thread per voxel of one batch element, looping over the views.
template <TextureFilter kFilter>
__global__ void backproject_kernel(cudaTextureObject_t views, const double* matrices, VoxelGrid grid,
                                   SinogramShape shape, float multiplier, float* volume) {
  const int64_t x = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t y = blockIdx.y * static_cast<int64_t>(blockDim.y) + threadIdx.y;
  const int64_t z = blockIdx.z * static_cast<int64_t>(blockDim.z) + threadIdx.z;
  if (x >= grid.shape.x || y >= grid.shape.y || z >= grid.shape.z) return;
  const double x_mm = grid.origin[0] + x * grid.spacing[0];
  const double y_mm = grid.origin[1] + y * grid.spacing[1];
  const double z_mm = grid.origin[2] + z * grid.spacing[2];
  const float width = static_cast<float>(shape.w), height = static_cast<float>(shape.h);
  float accumulated = 0.0f;
  for (int p = 0; p < shape.n; ++p) {
    const float3 row = project_rows(matrices + 12 * p, x_mm, y_mm, z_mm);
    const float inverse_w = 1.0f / row.z;
    accumulated += sample_view<kFilter>(views, p, row.x * inverse_w, row.y * inverse_w, width, height) *
                   (inverse_w * inverse_w);
  }
  volume[(z * grid.shape.y + y) * grid.shape.x + x] = accumulated * multiplier;
}

__global__ void backproject_adjoint_kernel(const double* matrices, VoxelGrid grid, SinogramShape shape,
                                           float multiplier, const float* volume, float* sinogram) {
  const int64_t x = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t y = blockIdx.y * static_cast<int64_t>(blockDim.y) + threadIdx.y;
  const int64_t z = blockIdx.z * static_cast<int64_t>(blockDim.z) + threadIdx.z;
  if (x >= grid.shape.x || y >= grid.shape.y || z >= grid.shape.z) return;
  const double x_mm = grid.origin[0] + x * grid.spacing[0];
  const double y_mm = grid.origin[1] + y * grid.spacing[1];
  const double z_mm = grid.origin[2] + z * grid.spacing[2];
  const float weighted = volume[(z * grid.shape.y + y) * grid.shape.x + x] * multiplier;
  for (int p = 0; p < shape.n; ++p) {
    const float3 row = project_rows(matrices + 12 * p, x_mm, y_mm, z_mm);
    const float inverse_w = 1.0f / row.z;
    const float u = clamp_coordinate(row.x * inverse_w, -1.0f, static_cast<float>(shape.w));
    const float v = clamp_coordinate(row.y * inverse_w, -1.0f, static_cast<float>(shape.h));
    const float u0 = floorf(u), v0 = floorf(v);
    const float fu = u - u0, fv = v - v0;
    const float upstream = weighted * (inverse_w * inverse_w);
    for (int corner = 0; corner < 4; ++corner) {
      const int du = corner & 1, dv = corner >> 1;
      const int64_t i = static_cast<int64_t>(u0) + du, j = static_cast<int64_t>(v0) + dv;
      if (i < 0 || j < 0 || i >= shape.w || j >= shape.h) continue;
      const float weight = (dv ? fv : 1.0f - fv) * (du ? fu : 1.0f - fu);
      atomicAdd(sinogram + (p * shape.h + j) * shape.w + i, upstream * weight);
    }
  }
}

// Ray frames of every view of every group, copied to the device.
cudaError_t device_frames(const BatchGeometry& geometry, int64_t views, cudaStream_t stream, DeviceMemory* out) {
  std::vector<RayFrame> frames(geometry.groups * views);
  for (int64_t g = 0; g < geometry.groups; ++g) {
    for (int64_t p = 0; p < views; ++p) {
      frames[g * views + p] =
          make_ray_frame(geometry.matrices + (g * views + p) * 12, geometry.origin + 3 * g, geometry.spacing + 3 * g);
    }
  }
  const size_t bytes = frames.size() * sizeof(RayFrame);
  PYRONN_CUDA_TRY(cudaMalloc(&out->pointer, bytes));
  PYRONN_CUDA_TRY(cudaMemcpyAsync(out->pointer, frames.data(), bytes, cudaMemcpyHostToDevice, stream));
  return cudaStreamSynchronize(stream);  // `frames` is a host temporary
}

cudaError_t device_matrices(const BatchGeometry& geometry, int64_t views, cudaStream_t stream, DeviceMemory* out) {
  const size_t bytes = geometry.groups * views * 12 * sizeof(double);
  PYRONN_CUDA_TRY(cudaMalloc(&out->pointer, bytes));
  return cudaMemcpyAsync(out->pointer, geometry.matrices, bytes, cudaMemcpyHostToDevice, stream);
}

VoxelGrid voxel_grid(const BatchGeometry& geometry, int64_t g, const VolumeShape& shape) {
  VoxelGrid grid;
  for (int axis = 0; axis < 3; ++axis) {
    grid.origin[axis] = geometry.origin[3 * g + axis];
    grid.spacing[axis] = geometry.spacing[3 * g + axis];
  }
  grid.shape = shape;
  return grid;
}

Box box_of(const VolumeShape& shape) {
  return {{static_cast<double>(shape.x), static_cast<double>(shape.y), static_cast<double>(shape.z)}};
}

// Runs launch(b, g) -> cudaError_t for every batch element b (g: its geometry group), checking
// each launch.
template <typename Launch>
cudaError_t for_each_element(int64_t batch, const BatchGeometry& geometry, Launch launch) {
  for (int64_t b = 0; b < batch; ++b) {
    PYRONN_CUDA_TRY(launch(b, geometry.groups == 1 ? 0 : b));
    PYRONN_CUDA_TRY(cudaGetLastError());
  }
  return cudaSuccess;
}

const dim3 kRayBlock(32, 8, 1);
const dim3 kVoxelBlock(32, 4, 2);

dim3 ray_grid(const SinogramShape& s) {
  return dim3(static_cast<unsigned>((s.w + kRayBlock.x - 1) / kRayBlock.x),
              static_cast<unsigned>((s.h + kRayBlock.y - 1) / kRayBlock.y), static_cast<unsigned>(s.n));
}

dim3 voxel_grid_dims(const VolumeShape& v) {
  return dim3(static_cast<unsigned>((v.x + kVoxelBlock.x - 1) / kVoxelBlock.x),
              static_cast<unsigned>((v.y + kVoxelBlock.y - 1) / kVoxelBlock.y),
              static_cast<unsigned>((v.z + kVoxelBlock.z - 1) / kVoxelBlock.z));
}

}  // namespace

cudaError_t cuda_project(const float* volume, int64_t batch, const VolumeShape& volume_shape,
                         const SinogramShape& sinogram_shape, const BatchGeometry& geometry, const double* steps,
                         bool hardware_interp, bool end_correction_rule, TextureFilter filter, float* sinogram,
                         bool* applied, cudaStream_t stream) {
  DeviceMemory frames;
  StreamWait wait{stream};
  PYRONN_CUDA_TRY(device_frames(geometry, sinogram_shape.n, stream, &frames));
  const int64_t voxels = volume_shape.z * volume_shape.y * volume_shape.x;
  const int64_t rays = sinogram_shape.n * sinogram_shape.h * sinogram_shape.w;
  return for_each_element(batch, geometry, [&](int64_t b, int64_t g) {
    TextureArray texture;
    PYRONN_CUDA_TRY(make_texture(volume + b * voxels, volume_shape.z, volume_shape.y, volume_shape.x, false, filter,
                                 stream, &texture));
    const auto kernel = filter == TextureFilter::kHardware ? project_kernel<TextureFilter::kHardware>
                                                           : project_kernel<TextureFilter::kExact>;
    kernel<<<ray_grid(sinogram_shape), kRayBlock, 0, stream>>>(
        texture.texture, static_cast<const RayFrame*>(frames.pointer) + g * sinogram_shape.n, box_of(volume_shape),
        sinogram_shape, static_cast<float>(steps[g]), hardware_interp, end_correction_rule, sinogram + b * rays,
        applied + b * rays);
    PYRONN_CUDA_TRY(cudaGetLastError());
    return cudaStreamSynchronize(stream);  // before this element's texture is freed
  });
}

cudaError_t cuda_project_adjoint(const float* sinogram, const bool* applied, int64_t batch,
                                 const VolumeShape& volume_shape, const SinogramShape& sinogram_shape,
                                 const BatchGeometry& geometry, const double* steps, bool hardware_interp,
                                 float* volume, cudaStream_t stream) {
  DeviceMemory frames;
  StreamWait wait{stream};
  PYRONN_CUDA_TRY(device_frames(geometry, sinogram_shape.n, stream, &frames));
  const int64_t voxels = volume_shape.z * volume_shape.y * volume_shape.x;
  const int64_t rays = sinogram_shape.n * sinogram_shape.h * sinogram_shape.w;
  PYRONN_CUDA_TRY(cudaMemsetAsync(volume, 0, batch * voxels * sizeof(float), stream));
  return for_each_element(batch, geometry, [&](int64_t b, int64_t g) {
    project_adjoint_kernel<<<ray_grid(sinogram_shape), kRayBlock, 0, stream>>>(
        static_cast<const RayFrame*>(frames.pointer) + g * sinogram_shape.n, box_of(volume_shape), volume_shape,
        sinogram_shape, static_cast<float>(steps[g]), hardware_interp, sinogram + b * rays, applied + b * rays,
        volume + b * voxels);
    return cudaSuccess;
  });
}

cudaError_t cuda_backproject(const float* sinogram, int64_t batch, const VolumeShape& volume_shape,
                             const SinogramShape& sinogram_shape, const BatchGeometry& geometry,
                             const double* multipliers, TextureFilter filter, float* volume, cudaStream_t stream) {
  DeviceMemory matrices;
  StreamWait wait{stream};
  PYRONN_CUDA_TRY(device_matrices(geometry, sinogram_shape.n, stream, &matrices));
  const int64_t voxels = volume_shape.z * volume_shape.y * volume_shape.x;
  const int64_t pixels = sinogram_shape.n * sinogram_shape.h * sinogram_shape.w;
  return for_each_element(batch, geometry, [&](int64_t b, int64_t g) {
    TextureArray texture;
    PYRONN_CUDA_TRY(make_texture(sinogram + b * pixels, sinogram_shape.n, sinogram_shape.h, sinogram_shape.w, true,
                                 filter, stream, &texture));
    const auto kernel = filter == TextureFilter::kHardware ? backproject_kernel<TextureFilter::kHardware>
                                                           : backproject_kernel<TextureFilter::kExact>;
    kernel<<<voxel_grid_dims(volume_shape), kVoxelBlock, 0, stream>>>(
        texture.texture, static_cast<const double*>(matrices.pointer) + g * sinogram_shape.n * 12,
        voxel_grid(geometry, g, volume_shape), sinogram_shape, static_cast<float>(multipliers[g]), volume + b * voxels);
    PYRONN_CUDA_TRY(cudaGetLastError());
    return cudaStreamSynchronize(stream);  // before this element's texture is freed
  });
}

cudaError_t cuda_backproject_adjoint(const float* volume, int64_t batch, const VolumeShape& volume_shape,
                                     const SinogramShape& sinogram_shape, const BatchGeometry& geometry,
                                     const double* multipliers, float* sinogram, cudaStream_t stream) {
  DeviceMemory matrices;
  StreamWait wait{stream};
  PYRONN_CUDA_TRY(device_matrices(geometry, sinogram_shape.n, stream, &matrices));
  const int64_t voxels = volume_shape.z * volume_shape.y * volume_shape.x;
  const int64_t pixels = sinogram_shape.n * sinogram_shape.h * sinogram_shape.w;
  PYRONN_CUDA_TRY(cudaMemsetAsync(sinogram, 0, batch * pixels * sizeof(float), stream));
  return for_each_element(batch, geometry, [&](int64_t b, int64_t g) {
    backproject_adjoint_kernel<<<voxel_grid_dims(volume_shape), kVoxelBlock, 0, stream>>>(
        static_cast<const double*>(matrices.pointer) + g * sinogram_shape.n * 12, voxel_grid(geometry, g, volume_shape),
        sinogram_shape, static_cast<float>(multipliers[g]), volume + b * voxels, sinogram + b * pixels);
    return cudaSuccess;
  });
}

}  // namespace pyronn
