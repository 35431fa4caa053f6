// Cone-beam geometry shared by the CPU kernels, the CUDA kernels and the standalone CUDA harness.
//
// Conventions (pyronn_ops, PYRO-NN): volumes [B, Z, Y, X] (x fastest), sinograms [B, N, H, W]
// (view, detector row v, detector column u). A projection matrix P (3 x 4, row-major, float64)
// maps homogeneous world coordinates (x, y, z, 1) in mm to (u*w, v*w, w), u and v pixel indices
// with pixel centres at integers, w the depth in mm. Voxel (k, j, i) has its centre at
// origin + (i*sx, j*sy, k*sz). Everything below works in voxel-index units (voxel centres at
// integers) after the per-view set-up.
//
// Only plain C++ here (no TensorFlow, no CUDA runtime); PYRONN_HD marks functions usable on both
// the host and a CUDA device.
#ifndef PYRONN_OPS_KERNELS_CONE_GEOMETRY_H_
#define PYRONN_OPS_KERNELS_CONE_GEOMETRY_H_

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define PYRONN_HD __host__ __device__
#else
#define PYRONN_HD
#endif

namespace pyronn {

// Zero padding of the flat interpolation grids: 1 element before and 2 after every axis, so that
// a coordinate clamped to [-1, n] has all its interpolation neighbours inside the padded array
// (the same layout as pyronn_ops/interpolation.py).
constexpr int kPadBefore = 1;
constexpr int kPadAfter = 2;

PYRONN_HD inline int64_t padded(int64_t n) { return n + kPadBefore + kPadAfter; }

// Shapes of one batch element.
struct VolumeShape {
  int64_t z, y, x;
};
struct SinogramShape {
  int64_t n, h, w;  // views, detector rows (v), detector columns (u)
};

// Per-view quantities of the ray-driven projector, voxel-index units, float64.
struct RayFrame {
  double inverse[9];  // row-major inverse of P[:, :3]: homogeneous pixel -> world direction (mm)
  double source[3];   // source position (x, y, z), voxel-index units
  double spacing[3];  // voxel size (x, y, z), mm
};

// One detector pixel's ray after clipping to the box (steps 1-3 of the kernel).
struct ClippedRay {
  float entry[3];      // entry point (x, y, z), voxel-index units (0 when the ray misses)
  float direction[3];  // unit direction in voxel-index space
  float chord;         // alpha_out - alpha_in, index units (0 when the ray misses)
  float mm_per_index;  // ||direction * spacing||: mm per unit of the ray parameter
};

// Determinant of P[:, :3] (row-major 3 x 4 matrix).
PYRONN_HD inline double determinant3(const double* p) {
  return p[0] * (p[5] * p[10] - p[6] * p[9]) - p[1] * (p[4] * p[10] - p[6] * p[8]) +
         p[2] * (p[4] * p[9] - p[5] * p[8]);
}

// True when P[:, :3] is invertible in the sense of GeometryCone3D.set_trajectory:
// |det| > 1e-12 * product of the row norms.
PYRONN_HD inline bool invertible(const double* p) {
  double scale = 1.0;
  for (int r = 0; r < 3; ++r) {
    scale *= std::sqrt(p[4 * r] * p[4 * r] + p[4 * r + 1] * p[4 * r + 1] + p[4 * r + 2] * p[4 * r + 2]);
  }
  return std::fabs(determinant3(p)) > 1e-12 * scale;
}

// Step 1-2 set-up of one view: inverse of P[:, :3], source C = -M^-1 P[:, 3] in index units.
// p: row-major 3 x 4 matrix; origin, spacing: (x, y, z) mm.
PYRONN_HD inline RayFrame make_ray_frame(const double* p, const double* origin, const double* spacing) {
  RayFrame frame;
  const double det = determinant3(p);
  // adjugate / determinant; M[r][c] = p[4 * r + c]
  const double m00 = p[0], m01 = p[1], m02 = p[2];
  const double m10 = p[4], m11 = p[5], m12 = p[6];
  const double m20 = p[8], m21 = p[9], m22 = p[10];
  double* inv = frame.inverse;
  inv[0] = (m11 * m22 - m12 * m21) / det;
  inv[1] = (m02 * m21 - m01 * m22) / det;
  inv[2] = (m01 * m12 - m02 * m11) / det;
  inv[3] = (m12 * m20 - m10 * m22) / det;
  inv[4] = (m00 * m22 - m02 * m20) / det;
  inv[5] = (m02 * m10 - m00 * m12) / det;
  inv[6] = (m10 * m21 - m11 * m20) / det;
  inv[7] = (m01 * m20 - m00 * m21) / det;
  inv[8] = (m00 * m11 - m01 * m10) / det;
  for (int axis = 0; axis < 3; ++axis) {
    const double source_mm =
        -(inv[3 * axis] * p[3] + inv[3 * axis + 1] * p[7] + inv[3 * axis + 2] * p[11]);
    frame.source[axis] = (source_mm - origin[axis]) / spacing[axis];
    frame.spacing[axis] = spacing[axis];
  }
  return frame;
}

// Steps 2-3 for detector pixel (u, v): direction in index space, clipped to the box
// [-0.5, n-0.5] (hardware_interp) or [0, n] per axis; the whole line is clipped (no alpha >= 0).
// size: (x, y, z) voxel counts. Float64 set-up, float32 results (sampling runs in float32
// relative to the entry point, as in pyronn_ops/projection.py).
PYRONN_HD inline ClippedRay clip_ray(const RayFrame& frame, double u, double v, const double* size,
                                     bool hardware_interp) {
  double direction_mm[3], direction[3];
  double norm2 = 0.0, norm_mm2 = 0.0;
  for (int axis = 0; axis < 3; ++axis) {
    const double* row = frame.inverse + 3 * axis;
    direction_mm[axis] = row[0] * u + row[1] * v + row[2];
    direction[axis] = direction_mm[axis] / frame.spacing[axis];
    norm2 += direction[axis] * direction[axis];
    norm_mm2 += direction_mm[axis] * direction_mm[axis];
  }
  const double norm = std::sqrt(norm2);
  double alpha_in = -INFINITY, alpha_out = INFINITY;
  for (int axis = 0; axis < 3; ++axis) {
    direction[axis] /= norm;
    const double low = hardware_interp ? -0.5 : 0.0;
    const double high = hardware_interp ? size[axis] - 0.5 : size[axis];
    const double start = frame.source[axis];
    double enter, leave;
    if (direction[axis] == 0.0) {
      const bool inside = start >= low && start <= high;
      enter = inside ? -INFINITY : INFINITY;
      leave = inside ? INFINITY : -INFINITY;
    } else {
      const double t_low = (low - start) / direction[axis];
      const double t_high = (high - start) / direction[axis];
      enter = t_low < t_high ? t_low : t_high;
      leave = t_low < t_high ? t_high : t_low;
    }
    alpha_in = enter > alpha_in ? enter : alpha_in;
    alpha_out = leave < alpha_out ? leave : alpha_out;
  }
  ClippedRay ray;
  const bool hit = alpha_in < alpha_out;  // false for NaN
  ray.chord = hit ? static_cast<float>(alpha_out - alpha_in) : 0.0f;
  for (int axis = 0; axis < 3; ++axis) {
    ray.entry[axis] = hit ? static_cast<float>(frame.source[axis] + alpha_in * direction[axis]) : 0.0f;
    ray.direction[axis] = static_cast<float>(direction[axis]);
  }
  ray.mm_per_index = static_cast<float>(std::sqrt(norm_mm2) / norm);
  return ray;
}

// Step 4: number of samples alpha_in + step*(k + 1/2) < alpha_out, evaluated in float32 exactly
// as the XLA kernels do (distance_k = step * (k + 0.5f) compared with the float32 chord).
PYRONN_HD inline int64_t sample_count(float chord, float step) {
  if (!(chord > 0.0f)) return 0;
  double estimate = std::ceil(static_cast<double>(chord) / static_cast<double>(step) - 0.5);
  int64_t count = estimate > 0.0 ? static_cast<int64_t>(estimate) : 0;
  while (count > 0 && !(step * (static_cast<float>(count - 1) + 0.5f) < chord)) --count;
  while (step * (static_cast<float>(count) + 0.5f) < chord) ++count;
  return count;
}

// End correction (step 7) coefficients for a ray with `count` > 0 samples: the last sample gets
// `last_coefficient` added, the exit point `exit_coefficient` (index units).
struct EndCorrection {
  float last_coefficient;
  float exit_coefficient;
  float last_distance;  // alpha_{K-1} - alpha_in
};

PYRONN_HD inline EndCorrection end_correction(float chord, float step, int64_t count) {
  EndCorrection c;
  c.last_distance = step * (static_cast<float>(count) - 0.5f);
  const float last_length = chord - c.last_distance;
  c.last_coefficient = last_length / 2 - step / 2;
  c.exit_coefficient = last_length / 2;
  return c;
}

// Steps 6-8 of one ray from the interpolated values: sum_f over all K samples, f_first = f_0,
// f_last = f_{K-1}, f_exit at the exit point. The end correction is applied when `count` > 0 and
// (not end_correction_rule or the plain sum > 0); value in value * mm.
struct RayValue {
  float value;
  bool corrected;
};

PYRONN_HD inline RayValue ray_value(float sum_f, float f_first, float f_last, float f_exit, float chord, float step,
                                    int64_t count, float mm_per_index, bool end_correction_rule) {
  if (count <= 0) return {0.0f, false};
  const float plain = step * (sum_f - 0.5f * f_first);
  const EndCorrection c = end_correction(chord, step, count);
  const bool corrected = !end_correction_rule || plain > 0.0f;
  const float correction = c.last_coefficient * f_last + c.exit_coefficient * f_exit;
  return {(plain + (corrected ? correction : 0.0f)) * mm_per_index, corrected};
}

// Coefficients of the projection's transpose along one ray with `count` > 0 samples, for the
// upstream value of the ray: every sample gets `interior` (the first half of it), the last sample
// `last_extra` more and the exit point `exit` (both zero unless the ray was end-corrected).
struct AdjointCoefficients {
  float interior, last_extra, exit;
};

PYRONN_HD inline AdjointCoefficients adjoint_coefficients(float upstream, float chord, float step, int64_t count,
                                                          float mm_per_index, bool corrected) {
  const float scaled = upstream * mm_per_index;
  AdjointCoefficients a = {scaled * step, 0.0f, 0.0f};
  if (count > 0 && corrected) {
    const EndCorrection c = end_correction(chord, step, count);
    a.last_extra = scaled * c.last_coefficient;
    a.exit = scaled * c.exit_coefficient;
  }
  return a;
}

// Row r (0: a, 1: b, 2: w) of P (X, 1) for the back-projector, split like the XLA kernel's
// per-axis terms: the x part with the translation, float32(P[r][0] * x_mm + P[r][3]), and the y/z
// part, float32(P[r][1] * y_mm) + float32(P[r][2] * z_mm); a voxel's row value is their sum.
PYRONN_HD inline float row_term_x(const double* p, int r, double x_mm) {
  return static_cast<float>(p[4 * r] * x_mm + p[4 * r + 3]);
}

PYRONN_HD inline float row_term_yz(const double* p, int r, double y_mm, double z_mm) {
  return static_cast<float>(p[4 * r + 1] * y_mm) + static_cast<float>(p[4 * r + 2] * z_mm);
}

// Clamp to [low, high]; NaN maps to `low` (the comparisons are false), so an index computed from
// the result always stays inside the padded grid.
PYRONN_HD inline float clamp_coordinate(float value, float low, float high) {
  value = value > low ? value : low;
  return value < high ? value : high;
}

}  // namespace pyronn

#endif  // PYRONN_OPS_KERNELS_CONE_GEOMETRY_H_
