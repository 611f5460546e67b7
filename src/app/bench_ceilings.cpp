#include "app/bench_ceilings.hpp"

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "backend/ops.hpp"
#include "core/tensor.hpp"
#include "core/timer.hpp"

namespace opd::app {

namespace ops = opd::backend;
using core::Tensor;

double measure_sgemm_gflops(int64_t n) {
  Tensor a = Tensor::empty({n, n}), b = Tensor::empty({n, n}), c = Tensor::empty({n, n});
  ops::fill(a, 0.5f);
  ops::fill(b, 0.25f);
  ops::gemm(a, false, b, false, c);  // warm-up: thread start, packing buffers
  double best = 0;
  for (int r = 0; r < 3; ++r) {
    core::Stopwatch t;
    ops::gemm(a, false, b, false, c);
    best = std::max(best, 2.0 * static_cast<double>(n * n * n) / t.seconds() / 1e9);
  }
  return best;
}

double measure_device_gemm_gflops(int64_t n, core::DType operands) {
  // An emulated device's GEMM is the CPU's (core/device_access.hpp): a size the CPU finishes
  // in well under a second, as its figure only exercises this path.
  if constexpr (core::kDeviceEmulation) n = std::min<int64_t>(n, 512);
  const auto dev = core::Device::Cuda;
  Tensor a32 = Tensor::empty({n, n}, core::DType::F32, dev), b32 = Tensor::empty({n, n}, core::DType::F32, dev);
  Tensor c = Tensor::empty({n, n}, core::DType::F32, dev);
  ops::fill(a32, 0.5f);
  ops::fill(b32, 0.25f);
  Tensor a = a32, b = b32;
  if (operands == core::DType::BF16) {
    a = Tensor::empty({n, n}, core::DType::BF16, dev);
    b = Tensor::empty({n, n}, core::DType::BF16, dev);
    ops::cast(a32, a);
    ops::cast(b32, b);
  }
  ops::gemm(a, false, b, false, c);  // warm-up: handles, workspace, kernel choice
  ops::synchronize(dev);
  double best = 0;
  for (int r = 0; r < 5; ++r) {
    core::Stopwatch t;
    ops::gemm(a, false, b, false, c);
    ops::synchronize(dev);
    best = std::max(best, 2.0 * static_cast<double>(n * n * n) / t.seconds() / 1e9);
  }
  return best;
}

double dense_bf16_peak_tflops(const std::string& name) {
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  // Datasheet dense (no sparsity) BF16 tensor-core rates; the SXM parts' boost-clock figures.
  if (has("H200") || has("GH200")) return 989.4;
  if (has("H100")) return has("PCIe") ? 756.0 : (has("NVL") ? 835.0 : 989.4);
  if (has("H800")) return 989.4;
  if (has("A100")) return 312.0;
  if (has("L40S")) return 362.0;
  if (has("B200")) return 2250.0;
  return 0.0;
}

double measure_device_copy_gbs(int64_t mib) {
  const auto dev = core::Device::Cuda;
  const int64_t n = mib * (1 << 20) / 4;
  Tensor a = Tensor::empty({n}, core::DType::F32, dev), b = Tensor::empty({n}, core::DType::F32, dev);
  ops::fill(a, 1.0f);
  ops::copy(a, b);
  ops::synchronize(dev);
  double best = 0;
  for (int r = 0; r < 5; ++r) {
    core::Stopwatch t;
    ops::copy(a, b);
    ops::synchronize(dev);
    best = std::max(best, 2.0 * 4.0 * static_cast<double>(n) / t.seconds() / 1e9);
  }
  return best;
}

namespace {
// Sum of floats with eight independent vector accumulators, so the loop is bound by memory and
// not by the add latency. p must be 16-byte aligned. GCC vector extensions compile to whatever
// SIMD the target has (SSE2 at least).
typedef float v4f __attribute__((vector_size(16)));

float stream_sum(const float* p, int64_t n) {
  const v4f* q = reinterpret_cast<const v4f*>(p);
  v4f acc[8] = {};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int u = 0; u < 8; ++u) acc[u] += q[i / 4 + u];
  float s = 0;
  for (; i < n; ++i) s += p[i];
  for (const auto& a : acc)
    for (int k = 0; k < 4; ++k) s += a[k];
  return s;
}
}  // namespace

double measure_read_bandwidth(int threads, int64_t bytes) {
  threads = std::max(1, threads);
  const int64_t n = bytes / 4;
  Tensor x = Tensor::empty({n});
  ops::fill(x, 1.0f);  // first touch outside the timing
  const float* p = x.data<float>();
  std::vector<float> sink(static_cast<std::size_t>(threads));
  double best = 0;
  for (int r = 0; r < 3; ++r) {
    core::Stopwatch t;
    std::vector<std::thread> pool;
    for (int k = 0; k < threads; ++k)
      pool.emplace_back([&, k] {
        // Split at multiples of 32 floats: every part starts 128-byte aligned.
        const int64_t lo = n / 32 * k / threads * 32;
        const int64_t hi = k + 1 == threads ? n : n / 32 * (k + 1) / threads * 32;
        sink[static_cast<std::size_t>(k)] = stream_sum(p + lo, hi - lo);
      });
    for (auto& th : pool) th.join();
    best = std::max(best, static_cast<double>(bytes) / t.seconds() / 1e9);
  }
  volatile float keep = sink[0];
  (void)keep;
  return best;
}

}  // namespace opd::app
