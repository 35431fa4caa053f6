// TensorFlow custom ops of pyronn_ops' cone-beam kernels (loaded with tf.load_op_library).
//
// Four ops, each the native twin of one XLA kernel of pyronn_ops/ops.py, with the geometry as
// tensor inputs (per-sample geometry: a leading group axis G = 1 or B):
//   PyronnConeProjection             volume [B,Z,Y,X] -> sinogram [B,N,H,W], applied [B,N,H,W]
//   PyronnConeProjectionAdjoint      sinogram, applied -> volume (exact transpose)
//   PyronnConeBackprojection         sinogram -> volume (FDK-weighted, times the multiplier)
//   PyronnConeBackprojectionAdjoint  volume -> sinogram (exact transpose)
// Gradients are attached in Python (pyronn_ops/ops.py: PYRO-NN's registered pair or the exact
// adjoints), so the raw ops are registered as not differentiable there.
//
// CPU kernels: cpu_kernels.cc, multi-threaded through TensorFlow's intra-op thread pool. With
// GOOGLE_CUDA the same ops get GPU kernels (cuda_kernels.cu). Bad input raises InvalidArgument
// with the messages of the Python checks; nothing here aborts the process.
#if GOOGLE_CUDA
#define EIGEN_USE_GPU
#include "cuda_kernels.h"
#include "unsupported/Eigen/CXX11/Tensor"
#endif

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cpu_kernels.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/threadpool.h"


namespace pyronn {
namespace {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

// InvalidArgument error with the pieces' text concatenated.
template <typename... Pieces>
absl::Status invalid(const Pieces&... pieces) {
  return absl::InvalidArgumentError(absl::StrCat(pieces...));
}

// Output shape [B (from input 0), N (from the matrices, input 1), attr...].
absl::Status batch_views_and_attr(InferenceContext* c, const char* attr) {
  ShapeHandle data, matrices;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &data));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &matrices));
  std::vector<int64_t> sizes;
  TF_RETURN_IF_ERROR(c->GetAttr(attr, &sizes));
  std::vector<DimensionHandle> dims = {c->Dim(data, 0)};
  if (sizes.size() == 2) dims.push_back(c->Dim(matrices, 1));
  for (int64_t size : sizes) dims.push_back(c->MakeDim(size));
  c->set_output(0, c->MakeShape(dims));
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("PyronnConeProjection")
    .Input("volume: float")      // [B, Z, Y, X] value per mm
    .Input("matrices: double")   // [G, N, 3, 4]
    .Input("origin: double")     // [G, 3] (x, y, z) mm
    .Input("spacing: double")    // [G, 3] (x, y, z) mm
    .Input("step: double")       // [G] voxel-index units
    .Attr("detector_shape: list(int)")  // [H, W]
    .Attr("hardware_interp: bool")
    .Attr("end_correction_rule: bool")
    .Output("sinogram: float")   // [B, N, H, W] value * mm
    .Output("applied: bool")     // [B, N, H, W] rays that received the end correction
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(batch_views_and_attr(c, "detector_shape"));
      c->set_output(1, c->output(0));
      return absl::OkStatus();
    })
    .Doc("Ray-driven trilinear cone-beam projection (pyronn_ops.projection.project).");

REGISTER_OP("PyronnConeProjectionAdjoint")
    .Input("sinogram: float")    // [B, N, H, W]
    .Input("matrices: double")
    .Input("origin: double")
    .Input("spacing: double")
    .Input("step: double")
    .Input("applied: bool")      // [B, N, H, W] from PyronnConeProjection
    .Attr("volume_shape: list(int)")  // [Z, Y, X]
    .Attr("hardware_interp: bool")
    .Output("volume: float")     // [B, Z, Y, X]
    .SetShapeFn([](InferenceContext* c) { return batch_views_and_attr(c, "volume_shape"); })
    .Doc("Exact transpose of PyronnConeProjection for a fixed end-correction pattern.");

REGISTER_OP("PyronnConeBackprojection")
    .Input("sinogram: float")    // [B, N, H, W]
    .Input("matrices: double")
    .Input("origin: double")
    .Input("spacing: double")
    .Input("multiplier: double") // [G] projection_multiplier
    .Attr("volume_shape: list(int)")
    .Output("volume: float")
    .SetShapeFn([](InferenceContext* c) { return batch_views_and_attr(c, "volume_shape"); })
    .Doc("Voxel-driven FDK-weighted cone-beam back-projection (pyronn_ops.backprojection.backproject).");

REGISTER_OP("PyronnConeBackprojectionAdjoint")
    .Input("volume: float")      // [B, Z, Y, X]
    .Input("matrices: double")
    .Input("origin: double")
    .Input("spacing: double")
    .Input("multiplier: double")
    .Attr("detector_shape: list(int)")
    .Output("sinogram: float")   // [B, N, H, W]
    .SetShapeFn([](InferenceContext* c) { return batch_views_and_attr(c, "detector_shape"); })
    .Doc("Exact transpose of PyronnConeBackprojection.");

namespace {

std::string shape_string(const Tensor& t) { return t.shape().DebugString(); }

bool all_finite(const double* values, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(values[i])) return false;
  }
  return true;
}

// Reads a list(int) attribute of `count` positive sizes.
void read_sizes(OpKernelConstruction* context, const char* name, size_t count, std::vector<int64_t>* sizes) {
  OP_REQUIRES_OK(context, context->GetAttr(name, sizes));
  OP_REQUIRES(context, sizes->size() == count,
              invalid(name, " must have ", count, " entries, got ", sizes->size()));
  for (int64_t size : *sizes) OP_REQUIRES(context, size > 0, invalid(name, " must be positive"));
}

// Validated geometry inputs (matrices, origin, spacing, per-group scalar) of a batch of B.
struct CheckedGeometry {
  BatchGeometry geometry;
  const double* scalars;  // step or multiplier, [G]
  int64_t views;
};

// Checks inputs 1-4 of every op against the data input's batch size; `scalar_name` names input 4.
bool check_geometry(OpKernelContext* context, int64_t batch, const char* scalar_name, bool positive_scalar,
                    CheckedGeometry* out) {
  const Tensor& matrices = context->input(1);
  const Tensor& origin = context->input(2);
  const Tensor& spacing = context->input(3);
  const Tensor& scalars = context->input(4);
  if (matrices.dims() != 4 || matrices.dim_size(2) != 3 || matrices.dim_size(3) != 4 || matrices.dim_size(1) < 1) {
    context->CtxFailure(invalid("projection_matrices must have shape (G, N, 3, 4), got ",
                                        shape_string(matrices)));
    return false;
  }
  const int64_t groups = matrices.dim_size(0);
  if (groups != 1 && groups != batch) {
    context->CtxFailure(invalid("projection_matrices batch (", groups, ") does not match the batch size ", batch));
    return false;
  }
  for (const Tensor* t : {&origin, &spacing}) {
    if (t->dims() != 2 || t->dim_size(0) != groups || t->dim_size(1) != 3) {
      context->CtxFailure(invalid("volume origin and spacing must have shape (", groups, ", 3), got ",
                                          shape_string(*t)));
      return false;
    }
  }
  if (scalars.dims() != 1 || scalars.dim_size(0) != groups) {
    context->CtxFailure(invalid(scalar_name, " must have shape (", groups, "), got ", shape_string(scalars)));
    return false;
  }
  const double* m = matrices.flat<double>().data();
  if (!all_finite(m, matrices.NumElements())) {
    context->CtxFailure(invalid("projection_matrices must be finite"));
    return false;
  }
  for (int64_t view = 0; view < groups * matrices.dim_size(1); ++view) {
    if (!invertible(m + 12 * view)) {
      context->CtxFailure(invalid("projection_matrices: P[:, :3] must be invertible for every view"));
      return false;
    }
  }
  const double* o = origin.flat<double>().data();
  const double* s = spacing.flat<double>().data();
  if (!all_finite(o, 3 * groups)) {
    context->CtxFailure(invalid("volume_origin must be finite"));
    return false;
  }
  for (int64_t i = 0; i < 3 * groups; ++i) {
    if (!std::isfinite(s[i]) || s[i] <= 0) {
      context->CtxFailure(invalid("volume_spacing must be positive and finite, got ", s[i]));
      return false;
    }
  }
  const double* v = scalars.flat<double>().data();
  for (int64_t g = 0; g < groups; ++g) {
    if (!std::isfinite(v[g]) || (positive_scalar && v[g] <= 0)) {
      context->CtxFailure(invalid(scalar_name, " must be ", positive_scalar ? "positive and " : "",
                                          "finite, got ", v[g]));
      return false;
    }
  }
  out->geometry = {m, o, s, groups};
  out->scalars = v;
  out->views = matrices.dim_size(1);
  return true;
}

// The data input 0 must be [B, ., ., .].
bool check_rank(OpKernelContext* context, const char* name, const char* axes) {
  const Tensor& data = context->input(0);
  if (data.dims() != 4) {
    context->CtxFailure(invalid(name, " must have rank 4 [", axes, "], got shape ", shape_string(data)));
    return false;
  }
  return true;
}

// The kernels index one padded grid (a volume or a view) with 32-bit offsets.
bool check_grid_size(OpKernelContext* context, const char* name, int64_t d0, int64_t d1, int64_t d2) {
  if (padded(d0) * padded(d1) * padded(d2) > std::numeric_limits<int32_t>::max()) {
    context->CtxFailure(invalid(name, " is too large for the native kernels (", d0, " x ", d1, " x ", d2,
                                "): use backend='xla'"));
    return false;
  }
  return true;
}

// Everything a kernel call needs, validated: batch size, shapes and geometry.
struct Problem {
  int64_t batch;
  VolumeShape volume;
  SinogramShape sinogram;
  CheckedGeometry checked;
  TensorShape volume_shape() const { return TensorShape({batch, volume.z, volume.y, volume.x}); }
  TensorShape sinogram_shape() const { return TensorShape({batch, sinogram.n, sinogram.h, sinogram.w}); }
};

bool check_sizes(OpKernelContext* context, const Problem& problem) {
  return check_grid_size(context, "volume", problem.volume.z, problem.volume.y, problem.volume.x) &&
         check_grid_size(context, "sinogram view", 1, problem.sinogram.h, problem.sinogram.w);
}

// Input 0 is a volume [B, Z, Y, X]; the detector [H, W] comes from an attribute.
bool volume_problem(OpKernelContext* context, const std::vector<int64_t>& detector, const char* scalar_name,
                    bool positive_scalar, Problem* problem) {
  if (!check_rank(context, "volume", "B, Z, Y, X")) return false;
  const Tensor& volume = context->input(0);
  problem->batch = volume.dim_size(0);
  if (!check_geometry(context, problem->batch, scalar_name, positive_scalar, &problem->checked)) return false;
  problem->volume = {volume.dim_size(1), volume.dim_size(2), volume.dim_size(3)};
  problem->sinogram = {problem->checked.views, detector[0], detector[1]};
  return check_sizes(context, *problem);
}

// Input 0 is a sinogram [B, N, H, W] with N the matrices' views; the volume [Z, Y, X] comes from an attribute.
bool sinogram_problem(OpKernelContext* context, const std::vector<int64_t>& volume, const char* scalar_name,
                      bool positive_scalar, Problem* problem) {
  if (!check_rank(context, "sinogram", "B, N, H, W")) return false;
  const Tensor& sinogram = context->input(0);
  problem->batch = sinogram.dim_size(0);
  if (!check_geometry(context, problem->batch, scalar_name, positive_scalar, &problem->checked)) return false;
  problem->sinogram = {sinogram.dim_size(1), sinogram.dim_size(2), sinogram.dim_size(3)};
  problem->volume = {volume[0], volume[1], volume[2]};
  if (problem->sinogram.n != problem->checked.views) {
    context->CtxFailure(invalid("sinogram shape ", shape_string(sinogram), " does not match the geometry: expected ",
                                problem->checked.views, " views"));
    return false;
  }
  return check_sizes(context, *problem);
}

bool allocate_scratch(OpKernelContext* context, int64_t floats, Tensor* scratch) {
  const absl::Status status = context->allocate_temp(::tensorflow::DT_FLOAT, TensorShape({floats}), scratch);
  if (!status.ok()) {
    context->CtxFailureWithWarning(status);
    return false;
  }
  return true;
}

#if GOOGLE_CUDA
cudaStream_t gpu_stream(OpKernelContext* context) { return context->eigen_device<Eigen::GpuDevice>().stream(); }

void report(OpKernelContext* context, cudaError_t status) {
  if (status != cudaSuccess) context->CtxFailure(absl::InternalError(absl::StrCat("CUDA: ", cudaGetErrorString(status))));
}
#endif

ParallelFor thread_pool_for(OpKernelContext* context) {
  ::tensorflow::thread::ThreadPool* pool = context->device()->tensorflow_cpu_worker_threads()->workers;
  return [pool](int64_t total, int64_t cost_per_unit, const std::function<void(int64_t, int64_t)>& body) {
    using Params = ::tensorflow::thread::ThreadPool::SchedulingParams;
    if (total > 0) pool->ParallelFor(total, Params::Adaptive(cost_per_unit), body);
  };
}

template <bool kGpu>
class ProjectionOp : public OpKernel {
 public:
  explicit ProjectionOp(OpKernelConstruction* context) : OpKernel(context) {
    read_sizes(context, "detector_shape", 2, &detector_);
    OP_REQUIRES_OK(context, context->GetAttr("hardware_interp", &hardware_interp_));
    OP_REQUIRES_OK(context, context->GetAttr("end_correction_rule", &end_correction_rule_));
  }

  void Compute(OpKernelContext* context) override {
    Problem p;
    if (!volume_problem(context, detector_, "step_size", true, &p)) return;
    Tensor* sinogram = nullptr;
    Tensor* applied = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, p.sinogram_shape(), &sinogram));
    OP_REQUIRES_OK(context, context->allocate_output(1, p.sinogram_shape(), &applied));
    if (p.batch == 0) return;
    const float* in = context->input(0).flat<float>().data();
    if constexpr (kGpu) {
#if GOOGLE_CUDA
      report(context, cuda_project(in, p.batch, p.volume, p.sinogram, p.checked.geometry, p.checked.scalars,
                                   hardware_interp_, end_correction_rule_, TextureFilter::kExact,
                                   sinogram->flat<float>().data(), applied->flat<bool>().data(), gpu_stream(context)));
#endif
      return;
    }
    Tensor scratch;
    if (!allocate_scratch(context, projection_scratch_floats(p.batch, p.volume), &scratch)) return;
    project(in, p.batch, p.volume, p.sinogram, p.checked.geometry, p.checked.scalars, hardware_interp_,
            end_correction_rule_, scratch.flat<float>().data(), sinogram->flat<float>().data(),
            applied->flat<bool>().data(), thread_pool_for(context));
  }

 private:
  std::vector<int64_t> detector_;
  bool hardware_interp_ = true;
  bool end_correction_rule_ = true;
};

template <bool kGpu>
class ProjectionAdjointOp : public OpKernel {
 public:
  explicit ProjectionAdjointOp(OpKernelConstruction* context) : OpKernel(context) {
    read_sizes(context, "volume_shape", 3, &volume_);
    OP_REQUIRES_OK(context, context->GetAttr("hardware_interp", &hardware_interp_));
  }

  void Compute(OpKernelContext* context) override {
    Problem p;
    if (!sinogram_problem(context, volume_, "step_size", true, &p)) return;
    const Tensor& applied = context->input(5);
    OP_REQUIRES(context, applied.shape() == context->input(0).shape(),
                invalid("applied must have the sinogram's shape ", shape_string(context->input(0)), ", got ",
                        shape_string(applied)));
    Tensor* volume = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, p.volume_shape(), &volume));
    if (p.batch == 0) return;
    const float* in = context->input(0).flat<float>().data();
    if constexpr (kGpu) {
#if GOOGLE_CUDA
      report(context, cuda_project_adjoint(in, applied.flat<bool>().data(), p.batch, p.volume, p.sinogram,
                                           p.checked.geometry, p.checked.scalars, hardware_interp_,
                                           volume->flat<float>().data(), gpu_stream(context)));
#endif
      return;
    }
    Tensor scratch;
    if (!allocate_scratch(context, projection_adjoint_scratch_floats(p.batch, p.volume, p.sinogram), &scratch)) return;
    project_adjoint(in, applied.flat<bool>().data(), p.batch, p.volume, p.sinogram, p.checked.geometry,
                    p.checked.scalars, hardware_interp_, scratch.flat<float>().data(), volume->flat<float>().data(),
                    thread_pool_for(context));
  }

 private:
  std::vector<int64_t> volume_;
  bool hardware_interp_ = true;
};

template <bool kGpu>
class BackprojectionOp : public OpKernel {
 public:
  explicit BackprojectionOp(OpKernelConstruction* context) : OpKernel(context) {
    read_sizes(context, "volume_shape", 3, &volume_);
  }

  void Compute(OpKernelContext* context) override {
    Problem p;
    if (!sinogram_problem(context, volume_, "projection_multiplier", false, &p)) return;
    Tensor* volume = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, p.volume_shape(), &volume));
    if (p.batch == 0) return;
    const float* in = context->input(0).flat<float>().data();
    if constexpr (kGpu) {
#if GOOGLE_CUDA
      report(context, cuda_backproject(in, p.batch, p.volume, p.sinogram, p.checked.geometry, p.checked.scalars,
                                       TextureFilter::kExact, volume->flat<float>().data(), gpu_stream(context)));
#endif
      return;
    }
    Tensor scratch;
    const int64_t floats = backprojection_scratch_floats(p.batch, p.volume, p.sinogram, p.checked.geometry.groups);
    if (!allocate_scratch(context, floats, &scratch)) return;
    backproject(in, p.batch, p.volume, p.sinogram, p.checked.geometry, p.checked.scalars, scratch.flat<float>().data(),
                volume->flat<float>().data(), thread_pool_for(context));
  }

 private:
  std::vector<int64_t> volume_;
};

template <bool kGpu>
class BackprojectionAdjointOp : public OpKernel {
 public:
  explicit BackprojectionAdjointOp(OpKernelConstruction* context) : OpKernel(context) {
    read_sizes(context, "detector_shape", 2, &detector_);
  }

  void Compute(OpKernelContext* context) override {
    Problem p;
    if (!volume_problem(context, detector_, "projection_multiplier", false, &p)) return;
    Tensor* sinogram = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, p.sinogram_shape(), &sinogram));
    if (p.batch == 0) return;
    const float* in = context->input(0).flat<float>().data();
    if constexpr (kGpu) {
#if GOOGLE_CUDA
      report(context, cuda_backproject_adjoint(in, p.batch, p.volume, p.sinogram, p.checked.geometry,
                                               p.checked.scalars, sinogram->flat<float>().data(), gpu_stream(context)));
#endif
      return;
    }
    Tensor scratch;
    const int64_t floats =
        backprojection_adjoint_scratch_floats(p.batch, p.volume, p.sinogram, p.checked.geometry.groups);
    if (!allocate_scratch(context, floats, &scratch)) return;
    backproject_adjoint(in, p.batch, p.volume, p.sinogram, p.checked.geometry, p.checked.scalars,
                        scratch.flat<float>().data(), sinogram->flat<float>().data(), thread_pool_for(context));
  }

 private:
  std::vector<int64_t> detector_;
};

}  // namespace

REGISTER_KERNEL_BUILDER(Name("PyronnConeProjection").Device(DEVICE_CPU), ProjectionOp<false>);
REGISTER_KERNEL_BUILDER(Name("PyronnConeProjectionAdjoint").Device(DEVICE_CPU), ProjectionAdjointOp<false>);
REGISTER_KERNEL_BUILDER(Name("PyronnConeBackprojection").Device(DEVICE_CPU), BackprojectionOp<false>);
REGISTER_KERNEL_BUILDER(Name("PyronnConeBackprojectionAdjoint").Device(DEVICE_CPU), BackprojectionAdjointOp<false>);

#if GOOGLE_CUDA
// the geometry stays in host memory: the launchers read it there (ray frames are set up on the host)
#define PYRONN_GPU_KERNEL(name) \
  Name(name).Device(::tensorflow::DEVICE_GPU).HostMemory("matrices").HostMemory("origin").HostMemory("spacing")
REGISTER_KERNEL_BUILDER(PYRONN_GPU_KERNEL("PyronnConeProjection").HostMemory("step"), ProjectionOp<true>);
REGISTER_KERNEL_BUILDER(PYRONN_GPU_KERNEL("PyronnConeProjectionAdjoint").HostMemory("step"), ProjectionAdjointOp<true>);
REGISTER_KERNEL_BUILDER(PYRONN_GPU_KERNEL("PyronnConeBackprojection").HostMemory("multiplier"), BackprojectionOp<true>);
REGISTER_KERNEL_BUILDER(PYRONN_GPU_KERNEL("PyronnConeBackprojectionAdjoint").HostMemory("multiplier"),
                        BackprojectionAdjointOp<true>);
#endif

}  // namespace pyronn
