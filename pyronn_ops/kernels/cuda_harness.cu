// Standalone harness of the cone-beam kernels (plain C++/CUDA, no TensorFlow), driven by
// gpu_check.py on a GPU machine:
//
//   cuda_harness check DIR
//       DIR/case.txt describes one case (exported by export_gpu_cases.py) whose inputs are raw
//       little-endian files in DIR; writes DIR/out_<name>.f32 (and out_applied.u8) for the CUDA
//       kernels (exact and hardware texture filtering) and the CPU kernels.
//   cuda_harness bench DIR REPEATS
//       DIR/case.txt describes a benchmark geometry; times the CUDA and CPU kernels on
//       pseudo-random data and prints one JSON line of figures.
//
// case.txt: one "key value..." line per entry: batch B; volume Z Y X; sinogram N H W; groups G;
// hardware_interp 0|1; end_correction_rule 0|1; steps (G values); multipliers (G values).
// Geometry files: matrices.f64 [G, N, 3, 4], origin.f64 [G, 3], spacing.f64 [G, 3] ((x, y, z) mm);
// check inputs: volume.f32 [B, Z, Y, X], sinogram.f32 [B, N, H, W].
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cpu_kernels.h"
#include "cuda_kernels.h"

namespace {

using pyronn::BatchGeometry;
using pyronn::SinogramShape;
using pyronn::TextureFilter;
using pyronn::VolumeShape;

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "cuda_harness: %s\n", message.c_str());
  std::exit(1);
}

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) fail(std::string(what) + ": " + cudaGetErrorString(status));
}

template <typename T>
std::vector<T> read_file(const std::string& path, size_t count) {
  std::vector<T> values(count);
  std::ifstream file(path, std::ios::binary);
  if (!file.read(reinterpret_cast<char*>(values.data()), count * sizeof(T))) fail("cannot read " + path);
  return values;
}

template <typename T>
void write_file(const std::string& path, const std::vector<T>& values) {
  std::ofstream file(path, std::ios::binary);
  if (!file.write(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T))) fail("cannot write " + path);
}

struct Case {
  int64_t batch = 1, groups = 1;
  VolumeShape volume{};
  SinogramShape sinogram{};
  bool hardware_interp = true, end_correction_rule = true;
  std::vector<double> steps, multipliers, matrices, origin, spacing;

  int64_t voxels() const { return batch * volume.z * volume.y * volume.x; }
  int64_t pixels() const { return batch * sinogram.n * sinogram.h * sinogram.w; }
  BatchGeometry geometry() const { return {matrices.data(), origin.data(), spacing.data(), groups}; }
};

Case read_case(const std::string& directory) {
  std::ifstream file(directory + "/case.txt");
  if (!file) fail("cannot read " + directory + "/case.txt");
  std::map<std::string, std::vector<double>> entries;
  std::string line;
  while (std::getline(file, line)) {
    std::istringstream words(line);
    std::string key;
    double value;
    if (!(words >> key)) continue;
    while (words >> value) entries[key].push_back(value);
  }
  auto get = [&](const char* key, size_t count) {
    const auto it = entries.find(key);
    if (it == entries.end() || it->second.size() != count) fail(std::string("case.txt: bad entry ") + key);
    return it->second;
  };
  Case c;
  c.batch = static_cast<int64_t>(get("batch", 1)[0]);
  c.groups = static_cast<int64_t>(get("groups", 1)[0]);
  const std::vector<double> v = get("volume", 3), s = get("sinogram", 3);
  c.volume = {static_cast<int64_t>(v[0]), static_cast<int64_t>(v[1]), static_cast<int64_t>(v[2])};
  c.sinogram = {static_cast<int64_t>(s[0]), static_cast<int64_t>(s[1]), static_cast<int64_t>(s[2])};
  c.hardware_interp = get("hardware_interp", 1)[0] != 0;
  c.end_correction_rule = get("end_correction_rule", 1)[0] != 0;
  c.steps = get("steps", c.groups);
  c.multipliers = get("multipliers", c.groups);
  c.matrices = read_file<double>(directory + "/matrices.f64", c.groups * c.sinogram.n * 12);
  c.origin = read_file<double>(directory + "/origin.f64", c.groups * 3);
  c.spacing = read_file<double>(directory + "/spacing.f64", c.groups * 3);
  return c;
}

// Contiguous ranges on all hardware threads (results do not depend on the split).
const pyronn::ParallelFor kThreads = [](int64_t total, int64_t, const std::function<void(int64_t, int64_t)>& body) {
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(total, std::thread::hardware_concurrency()));
  std::vector<std::thread> threads;
  for (int64_t t = 0; t < workers; ++t) {
    threads.emplace_back(body, total * t / workers, total * (t + 1) / workers);
  }
  for (std::thread& thread : threads) thread.join();
};

// Device copies of a host array and back.
template <typename T>
T* to_device(const std::vector<T>& host) {
  T* device = nullptr;
  check(cudaMalloc(&device, std::max<size_t>(1, host.size()) * sizeof(T)), "cudaMalloc");
  check(cudaMemcpy(device, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
  return device;
}

template <typename T>
std::vector<T> to_host(const T* device, size_t count) {
  std::vector<T> host(count);
  check(cudaMemcpy(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
  return host;
}

struct GpuData {
  float *volume, *sinogram, *volume_out, *sinogram_out;
  bool* applied;
};

GpuData gpu_data(const Case& c, const std::vector<float>& volume, const std::vector<float>& sinogram) {
  GpuData d{to_device(volume), to_device(sinogram), nullptr, nullptr, nullptr};
  check(cudaMalloc(&d.volume_out, c.voxels() * sizeof(float)), "cudaMalloc");
  check(cudaMalloc(&d.sinogram_out, c.pixels() * sizeof(float)), "cudaMalloc");
  check(cudaMalloc(&d.applied, c.pixels() * sizeof(bool)), "cudaMalloc");
  return d;
}

void gpu_project(const Case& c, const GpuData& d, TextureFilter filter) {
  check(pyronn::cuda_project(d.volume, c.batch, c.volume, c.sinogram, c.geometry(), c.steps.data(), c.hardware_interp,
                             c.end_correction_rule, filter, d.sinogram_out, d.applied, nullptr),
        "cuda_project");
}

void gpu_backproject(const Case& c, const GpuData& d, TextureFilter filter) {
  check(pyronn::cuda_backproject(d.sinogram, c.batch, c.volume, c.sinogram, c.geometry(), c.multipliers.data(), filter,
                                 d.volume_out, nullptr),
        "cuda_backproject");
}

void run_check(const std::string& directory) {
  const Case c = read_case(directory);
  const std::vector<float> volume = read_file<float>(directory + "/volume.f32", c.voxels());
  const std::vector<float> sinogram = read_file<float>(directory + "/sinogram.f32", c.pixels());
  const GpuData d = gpu_data(c, volume, sinogram);
  const auto out = [&](const char* name) { return directory + "/out_" + name; };

  gpu_project(c, d, TextureFilter::kExact);
  write_file(out("forward.f32"), to_host(d.sinogram_out, c.pixels()));
  std::vector<unsigned char> applied(c.pixels());  // bool is one byte
  check(cudaMemcpy(applied.data(), d.applied, c.pixels(), cudaMemcpyDeviceToHost), "cudaMemcpy");
  write_file(out("applied.u8"), applied);
  gpu_project(c, d, TextureFilter::kHardware);
  write_file(out("forward_hw.f32"), to_host(d.sinogram_out, c.pixels()));
  gpu_backproject(c, d, TextureFilter::kExact);
  write_file(out("back.f32"), to_host(d.volume_out, c.voxels()));
  gpu_backproject(c, d, TextureFilter::kHardware);
  write_file(out("back_hw.f32"), to_host(d.volume_out, c.voxels()));

  // transposes: the projection's for the exact forward pass' end-correction pattern
  bool* applied_device = nullptr;
  check(cudaMalloc(&applied_device, c.pixels()), "cudaMalloc");
  check(cudaMemcpy(applied_device, applied.data(), c.pixels(), cudaMemcpyHostToDevice), "cudaMemcpy");
  check(pyronn::cuda_project_adjoint(d.sinogram, applied_device, c.batch, c.volume, c.sinogram, c.geometry(),
                                     c.steps.data(), c.hardware_interp, d.volume_out, nullptr),
        "cuda_project_adjoint");
  write_file(out("forward_adjoint.f32"), to_host(d.volume_out, c.voxels()));
  check(pyronn::cuda_backproject_adjoint(d.volume, c.batch, c.volume, c.sinogram, c.geometry(), c.multipliers.data(),
                                         d.sinogram_out, nullptr),
        "cuda_backproject_adjoint");
  write_file(out("back_adjoint.f32"), to_host(d.sinogram_out, c.pixels()));

  // the CPU kernels on this machine, for a CPU-GPU cross-check
  std::vector<float> cpu_sinogram(c.pixels()), cpu_volume(c.voxels());
  std::unique_ptr<bool[]> cpu_applied(new bool[c.pixels()]);
  std::vector<float> scratch(std::max(pyronn::projection_scratch_floats(c.batch, c.volume),
                                      pyronn::backprojection_scratch_floats(c.batch, c.volume, c.sinogram, c.groups)));
  pyronn::project(volume.data(), c.batch, c.volume, c.sinogram, c.geometry(), c.steps.data(), c.hardware_interp,
                  c.end_correction_rule, scratch.data(), cpu_sinogram.data(), cpu_applied.get(), kThreads);
  write_file(out("cpu_forward.f32"), cpu_sinogram);
  pyronn::backproject(sinogram.data(), c.batch, c.volume, c.sinogram, c.geometry(), c.multipliers.data(),
                      scratch.data(), cpu_volume.data(), kThreads);
  write_file(out("cpu_back.f32"), cpu_volume);
}

// Pseudo-random values in [0, 1) (a fixed linear congruential sequence).
std::vector<float> pseudo_random(int64_t count, uint64_t seed) {
  std::vector<float> values(count);
  for (float& value : values) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    value = static_cast<float>(seed >> 40) / static_cast<float>(1 << 24);
  }
  return values;
}

// Samples every ray takes (step 4), counted on the host with the kernels' own functions.
int64_t total_samples(const Case& c) {
  const double size[3] = {static_cast<double>(c.volume.x), static_cast<double>(c.volume.y),
                          static_cast<double>(c.volume.z)};
  int64_t total = 0;
  for (int64_t b = 0; b < c.batch; ++b) {
    const int64_t g = c.groups == 1 ? 0 : b;
    for (int64_t p = 0; p < c.sinogram.n; ++p) {
      const pyronn::RayFrame frame = pyronn::make_ray_frame(c.matrices.data() + (g * c.sinogram.n + p) * 12,
                                                            c.origin.data() + 3 * g, c.spacing.data() + 3 * g);
      for (int64_t v = 0; v < c.sinogram.h; ++v) {
        for (int64_t u = 0; u < c.sinogram.w; ++u) {
          const pyronn::ClippedRay ray = pyronn::clip_ray(frame, u, v, size, c.hardware_interp);
          total += pyronn::sample_count(ray.chord, static_cast<float>(c.steps[g]));
        }
      }
    }
  }
  return total;
}

// Mean seconds of `repeats` calls after one warm-up call.
template <typename Function>
double seconds(Function function, int repeats) {
  function();
  check(cudaDeviceSynchronize(), "warm-up");
  const auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < repeats; ++r) function();
  check(cudaDeviceSynchronize(), "timed calls");
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / repeats;
}

void run_bench(const std::string& directory, int repeats) {
  const Case c = read_case(directory);
  const std::vector<float> volume = pseudo_random(c.voxels(), 1), sinogram = pseudo_random(c.pixels(), 2);
  const GpuData d = gpu_data(c, volume, sinogram);
  const double samples = static_cast<double>(total_samples(c));
  const double updates = static_cast<double>(c.voxels()) * c.sinogram.n;
  const double fp_exact = seconds([&] { gpu_project(c, d, TextureFilter::kExact); }, repeats);
  const double fp_hardware = seconds([&] { gpu_project(c, d, TextureFilter::kHardware); }, repeats);
  const double bp_exact = seconds([&] { gpu_backproject(c, d, TextureFilter::kExact); }, repeats);
  const double bp_hardware = seconds([&] { gpu_backproject(c, d, TextureFilter::kHardware); }, repeats);

  std::vector<float> cpu_sinogram(c.pixels()), cpu_volume(c.voxels());
  std::unique_ptr<bool[]> cpu_applied(new bool[c.pixels()]);
  std::vector<float> scratch(std::max(pyronn::projection_scratch_floats(c.batch, c.volume),
                                      pyronn::backprojection_scratch_floats(c.batch, c.volume, c.sinogram, c.groups)));
  const double fp_cpu = seconds([&] {
    pyronn::project(volume.data(), c.batch, c.volume, c.sinogram, c.geometry(), c.steps.data(), c.hardware_interp,
                    c.end_correction_rule, scratch.data(), cpu_sinogram.data(), cpu_applied.get(), kThreads);
  }, 1);
  const double bp_cpu = seconds([&] {
    pyronn::backproject(sinogram.data(), c.batch, c.volume, c.sinogram, c.geometry(), c.multipliers.data(),
                        scratch.data(), cpu_volume.data(), kThreads);
  }, 1);
  cudaDeviceProp properties;
  check(cudaGetDeviceProperties(&properties, 0), "cudaGetDeviceProperties");
  std::printf(
      "{\"device\": \"%s\", \"cpu_threads\": %u, \"samples\": %.0f, \"updates\": %.0f, "
      "\"fp_exact_s\": %.6f, \"fp_hardware_s\": %.6f, \"bp_exact_s\": %.6f, \"bp_hardware_s\": %.6f, "
      "\"fp_cpu_s\": %.6f, \"bp_cpu_s\": %.6f}\n",
      properties.name, std::thread::hardware_concurrency(), samples, updates, fp_exact, fp_hardware, bp_exact,
      bp_hardware, fp_cpu, bp_cpu);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "check" && argc == 3) {
    run_check(argv[2]);
  } else if (mode == "bench" && argc == 4) {
    run_bench(argv[2], std::max(1, std::atoi(argv[3])));
  } else {
    fail("usage: cuda_harness check DIR | cuda_harness bench DIR REPEATS");
  }
  return 0;
}
