// CPU cone-beam kernels; see cpu_kernels.h. The hot loops are plain C++ written for the compiler's
// vectoriser (fixed-width lane blocks, no bounds checks inside, padded grids); on x86-64 each hot
// function is also compiled for AVX2 and AVX-512 and picked at load time (target_clones).
#include "cpu_kernels.h"

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define PYRONN_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef PYRONN_VECTOR_CLONES
#define PYRONN_VECTOR_CLONES
#endif

namespace pyronn {
namespace {

// Samples of one ray handled together: partial sums are kept per lane, so the summation order is
// fixed by the code (not by the instruction set or the thread count).
constexpr int kLanes = 16;
// Voxels of one x-line handled per back-projection block (accumulators on the stack).
constexpr int64_t kLineBlock = 256;
// Padded z-slices owned by one unit of the projection adjoint's scatter.
constexpr int64_t kSlabDepth = 8;
// Rays whose set-up the projection adjoint keeps at once.
constexpr int64_t kRayTableSize = int64_t{1} << 20;

// A zero-padded 3D grid of one batch element, x fastest, 32-bit offsets.
struct PaddedGrid {
  const float* data;
  int32_t row;    // padded X
  int32_t slice;  // padded X * padded Y
  float size[3];  // unpadded (x, y, z) sizes, the upper clamp bound
};

// Lower-corner offset and fractions of a point in the padded grid (coordinates clamped to
// [-1, n]; shifted by the padding so that truncation is floor).
struct Corner {
  int32_t offset;
  float fx, fy, fz;
};

inline Corner locate(const PaddedGrid& grid, float x, float y, float z) {
  const float px = clamp_coordinate(x, -1.0f, grid.size[0]) + kPadBefore;
  const float py = clamp_coordinate(y, -1.0f, grid.size[1]) + kPadBefore;
  const float pz = clamp_coordinate(z, -1.0f, grid.size[2]) + kPadBefore;
  const int32_t ix = static_cast<int32_t>(px), iy = static_cast<int32_t>(py), iz = static_cast<int32_t>(pz);
  return {iz * grid.slice + iy * grid.row + ix, px - static_cast<float>(ix), py - static_cast<float>(iy),
          pz - static_cast<float>(iz)};
}

// The two neighbouring floats at `p` read as one 64-bit word (the vectoriser turns these reads
// into 64-bit gathers: half as many gathered elements as two 32-bit reads).
struct FloatPair {
  float first, second;
};

inline FloatPair load_pair(const float* p) {
  uint64_t bits;
  std::memcpy(&bits, p, sizeof(bits));
  const uint32_t low = static_cast<uint32_t>(bits), high = static_cast<uint32_t>(bits >> 32);
  FloatPair pair;
  std::memcpy(&pair.first, &low, sizeof(float));
  std::memcpy(&pair.second, &high, sizeof(float));
  return pair;
}

inline float trilinear(const PaddedGrid& grid, float x, float y, float z) {
  const Corner c = locate(grid, x, y, z);
  // x-neighbours as pairs from one base pointer: the form the vectoriser turns into gathers
  const float* __restrict data = grid.data;
  const int32_t o = c.offset, r = grid.row, s = grid.slice;
  const FloatPair p00 = load_pair(data + o), p01 = load_pair(data + o + r);
  const FloatPair p10 = load_pair(data + o + s), p11 = load_pair(data + o + s + r);
  const float c00 = p00.first + c.fx * (p00.second - p00.first);
  const float c01 = p01.first + c.fx * (p01.second - p01.first);
  const float c10 = p10.first + c.fx * (p10.second - p10.first);
  const float c11 = p11.first + c.fx * (p11.second - p11.first);
  const float c0 = c00 + c.fy * (c01 - c00);
  const float c1 = c10 + c.fy * (c11 - c10);
  return c0 + c.fz * (c1 - c0);
}

// `count` grids of shape [d0, d1, d2] (d2 fastest) and their zero-padded copies, padded by
// kPadBefore/kPadAfter along the last `rank` axes (2: [d0, d1+3, d2+3], 3: [d0+3, d1+3, d2+3]).
struct PaddedLayout {
  int64_t d0, d1, d2, p0, p1, p2, before0;

  PaddedLayout(int64_t n0, int64_t n1, int64_t n2, int rank)
      : d0(n0), d1(n1), d2(n2), p0(rank == 3 ? padded(n0) : n0), p1(padded(n1)), p2(padded(n2)),
        before0(rank == 3 ? kPadBefore : 0) {}
  // offsets of row (item, i0, i1) in the unpadded and the padded grids
  int64_t row(int64_t item, int64_t i0, int64_t i1) const { return ((item * d0 + i0) * d1 + i1) * d2; }
  int64_t padded_row(int64_t item, int64_t i0, int64_t i1) const {
    return ((item * p0 + i0 + before0) * p1 + i1 + kPadBefore) * p2 + kPadBefore;
  }
};

void pad_grids(const float* source, int64_t count, const PaddedLayout& layout, float* target,
               const ParallelFor& parallel_for) {
  parallel_for(count * layout.p0, layout.p1 * layout.p2, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {  // one padded [p1, p2] plane
      const int64_t item = unit / layout.p0, i0 = unit % layout.p0 - layout.before0;
      std::memset(target + unit * layout.p1 * layout.p2, 0, sizeof(float) * layout.p1 * layout.p2);
      if (i0 < 0 || i0 >= layout.d0) continue;
      for (int64_t i1 = 0; i1 < layout.d1; ++i1) {
        std::memcpy(target + layout.padded_row(item, i0, i1), source + layout.row(item, i0, i1), sizeof(float) * layout.d2);
      }
    }
  });
}

void crop_grids(const float* source, int64_t count, const PaddedLayout& layout, float* target,
                const ParallelFor& parallel_for) {
  parallel_for(count * layout.d0, layout.d1 * layout.d2, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {  // one unpadded [d1, d2] plane
      const int64_t item = unit / layout.d0, i0 = unit % layout.d0;
      for (int64_t i1 = 0; i1 < layout.d1; ++i1) {
        std::memcpy(target + layout.row(item, i0, i1), source + layout.padded_row(item, i0, i1), sizeof(float) * layout.d2);
      }
    }
  });
}

std::vector<RayFrame> ray_frames(const BatchGeometry& geometry, int64_t views) {
  std::vector<RayFrame> frames(geometry.groups * views);
  for (int64_t g = 0; g < geometry.groups; ++g) {
    for (int64_t p = 0; p < views; ++p) {
      frames[g * views + p] =
          make_ray_frame(geometry.matrices + (g * views + p) * 12, geometry.origin + 3 * g, geometry.spacing + 3 * g);
    }
  }
  return frames;
}

PaddedGrid volume_grid(const float* padded_volume, const VolumeShape& shape) {
  const int32_t row = static_cast<int32_t>(padded(shape.x));
  return {padded_volume, row, static_cast<int32_t>(row * padded(shape.y)),
          {static_cast<float>(shape.x), static_cast<float>(shape.y), static_cast<float>(shape.z)}};
}

// A ray with its samples: position of sample k = entry + step*(k + 1/2) * direction.
struct SampledRay {
  ClippedRay clip;
  float step;
  int64_t count;
};

SampledRay sample_ray(const RayFrame& frame, int64_t u, int64_t v, const double* size, bool hardware_interp,
                      float step) {
  SampledRay ray;
  ray.clip = clip_ray(frame, static_cast<double>(u), static_cast<double>(v), size, hardware_interp);
  ray.step = step;
  ray.count = sample_count(ray.clip.chord, step);
  return ray;
}

inline float sample_at(const PaddedGrid& grid, const ClippedRay& ray, float distance) {
  return trilinear(grid, ray.entry[0] + distance * ray.direction[0], ray.entry[1] + distance * ray.direction[1],
                   ray.entry[2] + distance * ray.direction[2]);
}

// f at the samples k0 .. k0 + kLanes - 1 of the ray (one vector of lanes).
inline void sample_block(const PaddedGrid& grid, const SampledRay& ray, int32_t k0, float* __restrict f) {
  for (int j = 0; j < kLanes; ++j) {
    f[j] = sample_at(grid, ray.clip, ray.step * (static_cast<float>(k0 + j) + 0.5f));
  }
}

// Sum of f over all samples of the ray (lane blocks, fixed summation tree), with f of the first
// and the last sample.
struct SampleSums {
  float sum, first, last;
};

inline SampleSums sum_samples(const PaddedGrid& grid, const SampledRay& ray) {
  float partial[kLanes] = {};
  float f[kLanes];
  const int32_t count = static_cast<int32_t>(ray.count);
  float first = 0.0f;
  for (int32_t k0 = 0; k0 < count; k0 += kLanes) {
    sample_block(grid, ray, k0, f);
    if (k0 == 0) first = f[0];
    for (int j = 0; j < kLanes; ++j) partial[j] += k0 + j < count ? f[j] : 0.0f;
  }
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int j = 0; j < width; ++j) partial[j] += partial[j + width];
  }
  return {partial[0], first, count > 0 ? f[(count - 1) % kLanes] : 0.0f};
}

struct ProjectionJob {
  PaddedGrid grid;  // data of batch element 0; element b at + b * volume_stride
  int64_t volume_stride;
  VolumeShape volume;
  SinogramShape sinogram;
  const RayFrame* frames;
  const double* steps;
  int64_t groups;
  bool hardware_interp, end_correction_rule;
  float* out;
  bool* applied;
};

// Rays of detector rows [begin, end) of the flat [B, N, H] row index.
PYRONN_VECTOR_CLONES void project_rows(const ProjectionJob& job, int64_t begin, int64_t end) {
  const double size[3] = {static_cast<double>(job.volume.x), static_cast<double>(job.volume.y),
                          static_cast<double>(job.volume.z)};
  const int64_t n = job.sinogram.n, h = job.sinogram.h, w = job.sinogram.w;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t b = row / (n * h), p = row / h % n, v = row % h;
    const int64_t g = job.groups == 1 ? 0 : b;
    PaddedGrid grid = job.grid;
    grid.data += b * job.volume_stride;
    const RayFrame& frame = job.frames[g * n + p];
    const float step = static_cast<float>(job.steps[g]);
    for (int64_t u = 0; u < w; ++u) {
      const SampledRay ray = sample_ray(frame, u, v, size, job.hardware_interp, step);
      RayValue result = {0.0f, false};
      if (ray.count > 0) {
        const SampleSums sums = sum_samples(grid, ray);
        result = ray_value(sums.sum, sums.first, sums.last, sample_at(grid, ray.clip, ray.clip.chord), ray.clip.chord,
                           step, ray.count, ray.clip.mm_per_index, job.end_correction_rule);
      }
      job.out[row * w + u] = result.value;
      job.applied[row * w + u] = result.corrected;
    }
  }
}

// The projection adjoint's set-up of one ray: its samples and their coefficients.
struct AdjointRay {
  SampledRay ray;
  AdjointCoefficients coefficients;
  float z_low, z_high;  // z range of the clipped ray (index units), to skip slabs it misses
};

struct AdjointJob {
  const AdjointRay* rays;  // [rays] table of the current view chunk
  int64_t ray_count;
  VolumeShape volume;
  float* grid;  // padded volume of the current batch element
  int32_t row, slice;
};

inline void scatter_point(const AdjointJob& job, int64_t slab_begin, int64_t slab_end, float x, float y, float z,
                          float value) {
  const PaddedGrid shape = {nullptr, job.row, job.slice,
                            {static_cast<float>(job.volume.x), static_cast<float>(job.volume.y),
                             static_cast<float>(job.volume.z)}};
  const Corner c = locate(shape, x, y, z);
  const int64_t iz = c.offset / job.slice;
  float* p = job.grid + c.offset;
  const float x0 = 1.0f - c.fx, y0 = 1.0f - c.fy;
  if (iz >= slab_begin && iz < slab_end) {
    const float v0 = value * (1.0f - c.fz);
    p[0] += v0 * y0 * x0;
    p[1] += v0 * y0 * c.fx;
    p[job.row] += v0 * c.fy * x0;
    p[job.row + 1] += v0 * c.fy * c.fx;
  }
  if (iz + 1 >= slab_begin && iz + 1 < slab_end) {
    const float v1 = value * c.fz;
    p[job.slice] += v1 * y0 * x0;
    p[job.slice + 1] += v1 * y0 * c.fx;
    p[job.slice + job.row] += v1 * c.fy * x0;
    p[job.slice + job.row + 1] += v1 * c.fy * c.fx;
  }
}

// Scatter every ray of the table into the padded z-slices [slab_begin, slab_end): rays in table
// order, samples in order, so each voxel receives its contributions in the serial order.
PYRONN_VECTOR_CLONES void scatter_slab(const AdjointJob& job, int64_t slab_begin, int64_t slab_end) {
  for (int64_t r = 0; r < job.ray_count; ++r) {
    const AdjointRay& a = job.rays[r];
    const SampledRay& ray = a.ray;
    const AdjointCoefficients& w = a.coefficients;
    if (ray.count == 0 || (w.interior == 0.0f && w.last_extra == 0.0f && w.exit == 0.0f)) continue;
    // padded z-corners of a point at z are floor(z) + 1 and + 2 (z clamped to [-1, n]); margin 1
    if (a.z_high + 3.0f < static_cast<float>(slab_begin) || a.z_low > static_cast<float>(slab_end) + 1.0f) continue;
    const ClippedRay& c = ray.clip;
    // samples whose lower padded z-corner lies in [slab_begin - 1, slab_end): a range of k, since
    // z is linear in k; widened by one sample on each side, then every sample is checked exactly
    int64_t k_begin = 0, k_end = ray.count;
    const float dz = c.direction[2] * ray.step;
    if (dz != 0.0f) {
      const double z0 = c.entry[2] + 0.5 * ray.step * c.direction[2];  // z of sample 0
      const double low = static_cast<double>(slab_begin - 1 - kPadBefore) - 1.0;
      const double high = static_cast<double>(slab_end - kPadBefore) + 1.0;
      double ka = (low - z0) / dz, kb = (high - z0) / dz;
      if (ka > kb) std::swap(ka, kb);
      k_begin = std::max<int64_t>(0, static_cast<int64_t>(std::floor(std::max(ka, -1.0))) - 1);
      k_end = std::min<int64_t>(ray.count, static_cast<int64_t>(std::ceil(std::min(kb, 1e18))) + 2);
    }
    for (int64_t k = k_begin; k < k_end; ++k) {
      const float distance = ray.step * (static_cast<float>(k) + 0.5f);
      const float coefficient = (k == 0 ? 0.5f * w.interior : w.interior) + (k == ray.count - 1 ? w.last_extra : 0.0f);
      scatter_point(job, slab_begin, slab_end, c.entry[0] + distance * c.direction[0],
                    c.entry[1] + distance * c.direction[1], c.entry[2] + distance * c.direction[2], coefficient);
    }
    if (w.exit != 0.0f) {
      scatter_point(job, slab_begin, slab_end, c.entry[0] + c.chord * c.direction[0],
                    c.entry[1] + c.chord * c.direction[1], c.entry[2] + c.chord * c.direction[2], w.exit);
    }
  }
}

// Per-view terms of P (X, 1) along x for the back-projector: for every view of every group,
// rows (a, b, w) of P[:, 0] * x_mm + P[:, 3] (float32, [G * N, 3, X]).
void axis_terms_x(const BatchGeometry& geometry, int64_t views, int64_t width, float* terms,
                  const ParallelFor& parallel_for) {
  parallel_for(geometry.groups * views, 3 * width * 4, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t g = item / views;
      const double* p = geometry.matrices + item * 12;
      for (int r = 0; r < 3; ++r) {
        for (int64_t x = 0; x < width; ++x) {
          const double coordinate = geometry.origin[3 * g] + static_cast<double>(x) * geometry.spacing[3 * g];
          terms[(item * 3 + r) * width + x] = row_term_x(p, r, coordinate);
        }
      }
    }
  });
}

// Rows (a, b, w) of P[:, 1] * y_mm + P[:, 2] * z_mm for one view (row_term_yz).
inline void line_terms(const BatchGeometry& geometry, int64_t g, const double* p, int64_t y, int64_t z,
                       float* out) {
  const double y_mm = geometry.origin[3 * g + 1] + static_cast<double>(y) * geometry.spacing[3 * g + 1];
  const double z_mm = geometry.origin[3 * g + 2] + static_cast<double>(z) * geometry.spacing[3 * g + 2];
  for (int r = 0; r < 3; ++r) out[r] = row_term_yz(p, r, y_mm, z_mm);
}

// Detector position of a voxel: corner offset in a padded view and the bilinear fractions.
struct DetectorPoint {
  int32_t offset;
  float fu, fv;
  float inverse_w2;
};

inline DetectorPoint project_voxel(float a, float b, float w, float height, float width, int32_t row) {
  const float inverse_w = 1.0f / w;
  const float pu = clamp_coordinate(a * inverse_w, -1.0f, width) + kPadBefore;
  const float pv = clamp_coordinate(b * inverse_w, -1.0f, height) + kPadBefore;
  const int32_t iu = static_cast<int32_t>(pu), iv = static_cast<int32_t>(pv);
  return {iv * row + iu, pu - static_cast<float>(iu), pv - static_cast<float>(iv), inverse_w * inverse_w};
}

// Bilinear value of a padded view at a detector point.
inline float bilinear(const float* __restrict view, const DetectorPoint& d, int32_t row) {
  const FloatPair t = load_pair(view + d.offset), b = load_pair(view + d.offset + row);
  const float top = t.first + d.fu * (t.second - t.first);
  const float bottom = b.first + d.fu * (b.second - b.first);
  return top + d.fv * (bottom - top);
}

struct BackprojectionJob {
  const float* padded_sinogram;  // [B, N, H+3, W+3]
  const float* terms;            // [G * N, 3, X]
  const BatchGeometry* geometry;
  const double* multipliers;
  VolumeShape volume;
  SinogramShape sinogram;
  float* out;  // [B, Z, Y, X]
};

// Back-project the x-lines [begin, end) of the flat [B, Z, Y] line index (RabbitCT layout: views
// outside, a contiguous block of x inside with the line's terms hoisted).
PYRONN_VECTOR_CLONES void backproject_lines(const BackprojectionJob& job, int64_t begin, int64_t end) {
  const int64_t n = job.sinogram.n, width = job.volume.x;
  const int32_t row = static_cast<int32_t>(padded(job.sinogram.w));
  const int64_t view_size = padded(job.sinogram.h) * padded(job.sinogram.w);
  const float detector_h = static_cast<float>(job.sinogram.h), detector_w = static_cast<float>(job.sinogram.w);
  for (int64_t line = begin; line < end; ++line) {
    const int64_t b = line / (job.volume.z * job.volume.y), z = line / job.volume.y % job.volume.z,
                  y = line % job.volume.y;
    const int64_t g = job.geometry->groups == 1 ? 0 : b;
    const float multiplier = static_cast<float>(job.multipliers[g]);
    for (int64_t x0 = 0; x0 < width; x0 += kLineBlock) {
      const int64_t block = std::min(kLineBlock, width - x0);
      float accumulated[kLineBlock] = {};
      for (int64_t p = 0; p < n; ++p) {
        float yz[3];
        line_terms(*job.geometry, g, job.geometry->matrices + (g * n + p) * 12, y, z, yz);
        const float ya = yz[0], yb = yz[1], yw = yz[2];
        const float* __restrict xa = job.terms + ((g * n + p) * 3) * width + x0;
        const float* __restrict xb = xa + width;
        const float* __restrict xw = xb + width;
        const float* __restrict view = job.padded_sinogram + (b * n + p) * view_size;
        for (int32_t x = 0; x < static_cast<int32_t>(block); ++x) {
          const DetectorPoint d = project_voxel(xa[x] + ya, xb[x] + yb, xw[x] + yw, detector_h, detector_w, row);
          accumulated[x] += bilinear(view, d, row) * d.inverse_w2;
        }
      }
      float* out = job.out + line * width + x0;
      for (int64_t x = 0; x < block; ++x) out[x] = accumulated[x] * multiplier;
    }
  }
}

// Scatter the weighted volume into the padded views [begin, end) of the flat [B, N] view index.
PYRONN_VECTOR_CLONES void backproject_adjoint_views(const BackprojectionJob& job, const float* volume,
                                                     float* padded_views, int64_t begin, int64_t end) {
  const int64_t n = job.sinogram.n, width = job.volume.x;
  const int32_t row = static_cast<int32_t>(padded(job.sinogram.w));
  const int64_t view_size = padded(job.sinogram.h) * padded(job.sinogram.w);
  const float detector_h = static_cast<float>(job.sinogram.h), detector_w = static_cast<float>(job.sinogram.w);
  for (int64_t item = begin; item < end; ++item) {
    const int64_t b = item / n, p = item % n;
    const int64_t g = job.geometry->groups == 1 ? 0 : b;
    const float multiplier = static_cast<float>(job.multipliers[g]);
    float* view = padded_views + item * view_size;
    std::fill(view, view + view_size, 0.0f);
    const float* xa = job.terms + ((g * n + p) * 3) * width;
    const float* xb = xa + width;
    const float* xw = xb + width;
    for (int64_t z = 0; z < job.volume.z; ++z) {
      for (int64_t y = 0; y < job.volume.y; ++y) {
        float yz[3];
        line_terms(*job.geometry, g, job.geometry->matrices + (g * n + p) * 12, y, z, yz);
        const float* values = volume + ((b * job.volume.z + z) * job.volume.y + y) * width;
        for (int64_t x = 0; x < width; ++x) {
          const DetectorPoint d = project_voxel(xa[x] + yz[0], xb[x] + yz[1], xw[x] + yz[2], detector_h, detector_w, row);
          const float upstream = values[x] * multiplier * d.inverse_w2;
          float* c = view + d.offset;
          const float u0 = 1.0f - d.fu, v0 = 1.0f - d.fv;
          c[0] += upstream * (v0 * u0);
          c[1] += upstream * (v0 * d.fu);
          c[row] += upstream * (d.fv * u0);
          c[row + 1] += upstream * (d.fv * d.fu);
        }
      }
    }
  }
}

int64_t mean_samples(const VolumeShape& v) { return std::max<int64_t>(1, (v.x + v.y + v.z) / 2); }

// Views whose rays fill the projection adjoint's ray table (at least one).
int64_t adjoint_views_per_chunk(const SinogramShape& s) {
  return std::max<int64_t>(1, kRayTableSize / std::max<int64_t>(s.h * s.w, 1));
}

}  // namespace

int64_t projection_scratch_floats(int64_t batch, const VolumeShape& v) {
  return batch * padded(v.z) * padded(v.y) * padded(v.x);
}

int64_t projection_adjoint_scratch_floats(int64_t batch, const VolumeShape& v, const SinogramShape& s) {
  (void)batch;  // batch elements are processed one after the other
  // one padded volume, then the ray table of a chunk of views (64-byte aligned)
  const int64_t table_rays = adjoint_views_per_chunk(s) * s.h * s.w;
  return padded(v.z) * padded(v.y) * padded(v.x) + 16 +
         (table_rays * static_cast<int64_t>(sizeof(AdjointRay)) + sizeof(float) - 1) / sizeof(float);
}

int64_t backprojection_scratch_floats(int64_t batch, const VolumeShape& v, const SinogramShape& s, int64_t groups) {
  return batch * s.n * padded(s.h) * padded(s.w) + groups * s.n * 3 * v.x;
}

int64_t backprojection_adjoint_scratch_floats(int64_t batch, const VolumeShape& v, const SinogramShape& s,
                                              int64_t groups) {
  return backprojection_scratch_floats(batch, v, s, groups);
}

void project(const float* volume, int64_t batch, const VolumeShape& volume_shape, const SinogramShape& sinogram_shape,
             const BatchGeometry& geometry, const double* steps, bool hardware_interp, bool end_correction_rule,
             float* scratch, float* sinogram, bool* applied, const ParallelFor& parallel_for) {
  pad_grids(volume, batch, PaddedLayout(volume_shape.z, volume_shape.y, volume_shape.x, 3), scratch, parallel_for);
  const std::vector<RayFrame> frames = ray_frames(geometry, sinogram_shape.n);
  const ProjectionJob job = {volume_grid(scratch, volume_shape),
                             padded(volume_shape.z) * padded(volume_shape.y) * padded(volume_shape.x),
                             volume_shape,
                             sinogram_shape,
                             frames.data(),
                             steps,
                             geometry.groups,
                             hardware_interp,
                             end_correction_rule,
                             sinogram,
                             applied};
  const double min_step = *std::min_element(steps, steps + geometry.groups);
  const int64_t cost = sinogram_shape.w * (200 + static_cast<int64_t>(25.0 * mean_samples(volume_shape) / min_step));
  parallel_for(batch * sinogram_shape.n * sinogram_shape.h, cost,
               [&](int64_t begin, int64_t end) { project_rows(job, begin, end); });
}

void project_adjoint(const float* sinogram, const bool* applied, int64_t batch, const VolumeShape& volume_shape,
                     const SinogramShape& sinogram_shape, const BatchGeometry& geometry, const double* steps,
                     bool hardware_interp, float* scratch, float* volume, const ParallelFor& parallel_for) {
  const int64_t n = sinogram_shape.n, h = sinogram_shape.h, w = sinogram_shape.w;
  const int64_t grid_size = padded(volume_shape.z) * padded(volume_shape.y) * padded(volume_shape.x);
  float* grid = scratch;
  AdjointRay* table = reinterpret_cast<AdjointRay*>(
      reinterpret_cast<uintptr_t>(scratch + grid_size + 15) & ~static_cast<uintptr_t>(63));
  const int64_t views_per_chunk = adjoint_views_per_chunk(sinogram_shape);
  const std::vector<RayFrame> frames = ray_frames(geometry, n);
  const double size[3] = {static_cast<double>(volume_shape.x), static_cast<double>(volume_shape.y),
                          static_cast<double>(volume_shape.z)};
  const int64_t slabs = (padded(volume_shape.z) + kSlabDepth - 1) / kSlabDepth;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t g = geometry.groups == 1 ? 0 : b;
    const float step = static_cast<float>(steps[g]);
    std::fill(grid, grid + grid_size, 0.0f);
    for (int64_t first = 0; first < n; first += views_per_chunk) {
      const int64_t views = std::min(views_per_chunk, n - first);
      parallel_for(views * h, w * 200, [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          const int64_t p = first + row / h, v = row % h;
          for (int64_t u = 0; u < w; ++u) {
            const int64_t ray_index = ((b * n + p) * h + v) * w + u;
            AdjointRay& a = table[row * w + u];
            a.ray = sample_ray(frames[g * n + p], u, v, size, hardware_interp, step);
            a.coefficients = adjoint_coefficients(sinogram[ray_index], a.ray.clip.chord, step, a.ray.count,
                                                  a.ray.clip.mm_per_index, applied[ray_index]);
            const float z_exit = a.ray.clip.entry[2] + a.ray.clip.chord * a.ray.clip.direction[2];
            a.z_low = std::min(a.ray.clip.entry[2], z_exit);
            a.z_high = std::max(a.ray.clip.entry[2], z_exit);
          }
        }
      });
      const PaddedGrid shape = volume_grid(grid, volume_shape);
      const AdjointJob job = {table, views * h * w, volume_shape, grid, shape.row, shape.slice};
      parallel_for(slabs, views * h * w * (20 + 60 * mean_samples(volume_shape) / slabs), [&](int64_t begin, int64_t end) {
        for (int64_t slab = begin; slab < end; ++slab) {
          scatter_slab(job, slab * kSlabDepth, std::min(padded(volume_shape.z), (slab + 1) * kSlabDepth));
        }
      });
    }
    crop_grids(grid, 1, PaddedLayout(volume_shape.z, volume_shape.y, volume_shape.x, 3),
               volume + b * volume_shape.z * volume_shape.y * volume_shape.x, parallel_for);
  }
}

namespace {

// The back-projector's scratch: padded views [B, N, H+3, W+3], then the x-terms of every view.
BackprojectionJob backprojection_job(int64_t batch, const VolumeShape& volume_shape, const SinogramShape& sinogram_shape,
                                     const BatchGeometry& geometry, const double* multipliers, float* scratch,
                                     const ParallelFor& parallel_for) {
  float* terms = scratch + batch * sinogram_shape.n * padded(sinogram_shape.h) * padded(sinogram_shape.w);
  axis_terms_x(geometry, sinogram_shape.n, volume_shape.x, terms, parallel_for);
  return {scratch, terms, &geometry, multipliers, volume_shape, sinogram_shape, nullptr};
}

}  // namespace

void backproject(const float* sinogram, int64_t batch, const VolumeShape& volume_shape,
                 const SinogramShape& sinogram_shape, const BatchGeometry& geometry, const double* multipliers,
                 float* scratch, float* volume, const ParallelFor& parallel_for) {
  BackprojectionJob job =
      backprojection_job(batch, volume_shape, sinogram_shape, geometry, multipliers, scratch, parallel_for);
  job.out = volume;
  pad_grids(sinogram, batch, PaddedLayout(sinogram_shape.n, sinogram_shape.h, sinogram_shape.w, 2), scratch,
            parallel_for);
  parallel_for(batch * volume_shape.z * volume_shape.y, sinogram_shape.n * volume_shape.x * 6,
               [&](int64_t begin, int64_t end) { backproject_lines(job, begin, end); });
}

void backproject_adjoint(const float* volume, int64_t batch, const VolumeShape& volume_shape,
                         const SinogramShape& sinogram_shape, const BatchGeometry& geometry, const double* multipliers,
                         float* scratch, float* sinogram, const ParallelFor& parallel_for) {
  const BackprojectionJob job =
      backprojection_job(batch, volume_shape, sinogram_shape, geometry, multipliers, scratch, parallel_for);
  parallel_for(batch * sinogram_shape.n, volume_shape.z * volume_shape.y * volume_shape.x * 20,
               [&](int64_t begin, int64_t end) { backproject_adjoint_views(job, volume, scratch, begin, end); });
  crop_grids(scratch, batch, PaddedLayout(sinogram_shape.n, sinogram_shape.h, sinogram_shape.w, 2), sinogram,
             parallel_for);
}

}  // namespace pyronn
