// CUDA elementwise ops, the f32 <-> bf16 casts (the rounding of core/bf16.hpp), bias and the
// double-precision sum of squares (backend/ops.hpp).
// Grid-stride loops over the flat tensor; the column sums (bias_backward) give each thread a
// column and walk the rows, so that neighbouring threads read neighbouring floats.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_ops.hpp"
#include "backend/cuda/ordered_sums.cuh"
#include "core/bf16.hpp"

namespace opd::backend::cuda {

using core::DType;

namespace {

__global__ void fill_f32(float* x, int64_t n, float v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) x[i] = v;
}
__global__ void fill_i32(int32_t* x, int64_t n, int32_t v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) x[i] = v;
}
__global__ void scale_f32(float* x, int64_t n, float a) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) x[i] *= a;
}
__global__ void axpy_f32(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) y[i] += a * x[i];
}
__global__ void add_f32(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) out[i] = a[i] + b[i];
}
__global__ void add_bias_f32(float* x, const float* bias, int64_t n, int64_t d) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n * d; i += int64_t(gridDim.x) * blockDim.x) x[i] += bias[i % d];
}
__global__ void column_sums_f32(const float* dy, float* dbias, int64_t n, int64_t d) {
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < d; j += int64_t(gridDim.x) * blockDim.x) {
    double s = 0.0;
    for (int64_t r = 0; r < n; ++r) s += dy[r * d + j];
    dbias[j] += static_cast<float>(s);
  }
}

__global__ void cast_to_bf16(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = core::float_to_bf16(src[i]);
}
__global__ void cast_to_f32(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = core::bf16_to_float(src[i]);
}

void same_numel(const char* op, const Tensor& a, const Tensor& b) {
  OPD_CHECK(a.numel() == b.numel(), op, ": ", a.describe(), " and ", b.describe(), " differ in size");
}

}  // namespace

void fill(Tensor& x, float value) {
  OPD_CHECK(x.device() == core::Device::Cuda, "fill: not a CUDA tensor");
  if (x.dtype() == DType::I32) {
    fill_i32<<<blocks_for(x.numel()), kThreads, 0, stream()>>>(x.data<int32_t>(), x.numel(), static_cast<int32_t>(value));
  } else {
    require_device("fill", "x", x);
    fill_f32<<<blocks_for(x.numel()), kThreads, 0, stream()>>>(x.data<float>(), x.numel(), value);
  }
  check_launch("fill");
}

void copy(const Tensor& src, Tensor& dst) {
  OPD_CHECK(src.dtype() == dst.dtype() && src.numel() == dst.numel(), "copy: ", src.describe(),
            " into ", dst.describe());
  const cudaMemcpyKind kind = src.is_host() ? (dst.is_host() ? cudaMemcpyHostToHost : cudaMemcpyHostToDevice)
                                            : (dst.is_host() ? cudaMemcpyDeviceToHost : cudaMemcpyDeviceToDevice);
  check(cudaMemcpy(dst.raw(), src.raw(), src.bytes(), kind), "copy");
}

void cast(const Tensor& src, Tensor& dst) {
  const bool down = src.dtype() == DType::F32 && dst.dtype() == DType::BF16;
  const bool up = src.dtype() == DType::BF16 && dst.dtype() == DType::F32;
  OPD_CHECK(src.device() == core::Device::Cuda && dst.device() == core::Device::Cuda && (down || up),
            "cast: needs CUDA f32 -> bf16 or bf16 -> f32, got ", src.describe(), " -> ", dst.describe());
  same_numel("cast", src, dst);
  if (down)
    cast_to_bf16<<<blocks_for(src.numel()), kThreads, 0, stream()>>>(src.data<float>(), dst.data<uint16_t>(), src.numel());
  else
    cast_to_f32<<<blocks_for(src.numel()), kThreads, 0, stream()>>>(src.data<uint16_t>(), dst.data<float>(), src.numel());
  check_launch("cast");
}

void scale(Tensor& x, float alpha) {
  require_device("scale", "x", x);
  scale_f32<<<blocks_for(x.numel()), kThreads, 0, stream()>>>(x.data<float>(), x.numel(), alpha);
  check_launch("scale");
}

void axpy(float alpha, const Tensor& x, Tensor& y) {
  require_device("axpy", "x", x);
  require_device("axpy", "y", y);
  same_numel("axpy", x, y);
  axpy_f32<<<blocks_for(x.numel()), kThreads, 0, stream()>>>(alpha, x.data<float>(), y.data<float>(), x.numel());
  check_launch("axpy");
}

void add(const Tensor& a, const Tensor& b, Tensor& out) {
  require_device("add", "a", a);
  require_device("add", "b", b);
  require_device("add", "out", out);
  same_numel("add", a, b);
  same_numel("add", a, out);
  add_f32<<<blocks_for(a.numel()), kThreads, 0, stream()>>>(a.data<float>(), b.data<float>(), out.data<float>(), a.numel());
  check_launch("add");
}

void add_bias(Tensor& x, const Tensor& bias) {
  require_device("add_bias", "x", x);
  require_device("add_bias", "bias", bias);
  const int64_t d = bias.numel();
  OPD_CHECK(d > 0 && x.dim(-1) == d, "add_bias: ", bias.describe(), " for ", x.describe());
  add_bias_f32<<<blocks_for(x.numel()), kThreads, 0, stream()>>>(x.data<float>(), bias.data<float>(), x.numel() / d, d);
  check_launch("add_bias");
}

void bias_backward(const Tensor& dy, Tensor& dbias) {
  require_device("bias_backward", "dy", dy);
  require_device("bias_backward", "dbias", dbias);
  const int64_t d = dbias.numel();
  OPD_CHECK(d > 0 && dy.dim(-1) == d, "bias_backward: ", dbias.describe(), " for ", dy.describe());
  column_sums_f32<<<blocks_for(d), kThreads, 0, stream()>>>(dy.data<float>(), dbias.data<float>(), dy.numel() / d, d);
  check_launch("bias_backward");
}

double sum_squares(const Tensor& x) {
  require_device("sum_squares", "x", x);
  // Block partials, then one block adds them (ordered_sums.cuh: the same bits every run). One
  // buffer for the process (the global norm calls this once per parameter: a cudaMalloc and
  // cudaFree each time would cost more than the sums): the total, then a partial per block.
  constexpr int kMaxBlocks = 65535;
  static double* acc = [] {
    double* p = nullptr;
    check(cudaMalloc(&p, (1 + kMaxBlocks) * sizeof(double)), "sum_squares: cudaMalloc");
    return p;
  }();
  const int blocks = blocks_for(x.numel());
  static_assert(ordered::kThreads == kThreads, "one block size");
  ordered::square_partials<<<blocks, kThreads, 0, stream()>>>(x.data<float>(), x.numel(), acc + 1);
  check_launch("sum_squares");
  ordered::sum_partials<<<1, kThreads, 0, stream()>>>(acc + 1, blocks, acc);
  check_launch("sum_squares (total)");
  double out = 0.0;
  check(cudaMemcpy(&out, acc, sizeof(double), cudaMemcpyDeviceToHost), "sum_squares: copy back");
  return out;
}

}  // namespace opd::backend::cuda
