// CUDA RMSNorm, RoPE and SwiGLU (backend/ops.hpp), fp32; the normed and SwiGLU outputs (and
// SwiGLU's gradients) may be bf16, the GEMM operands of mixed precision.
//  - RMSNorm: one block per row; the sums of squares (forward) and of dy w x (backward) are
//    block reductions in double, like the CPU reference; dw sums over rows in a fixed order
//    (ordered_sums.cuh), so the result does not depend on scheduling.
//  - RoPE: one thread per rotated pair; the angle pos * theta^(-2i/E) in double.
//  - SwiGLU: elementwise, silu(g) = g sigmoid(g).
#include "backend/cuda/block_reduce.cuh"
#include "backend/cuda/ordered_sums.cuh"
#include "core/bf16.hpp"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_ops.hpp"

namespace opd::backend::cuda {

namespace {

// An output element: f32, or bf16 (uint16_t bits) rounded as cast() rounds, so a bf16 output
// has the bits of the f32 result cast afterwards.
__device__ __forceinline__ void put(float* p, float v) { *p = v; }
__device__ __forceinline__ void put(uint16_t* p, float v) { *p = core::float_to_bf16(v); }

template <class Out>
__global__ void rmsnorm_fwd(const float* x, const float* w, float eps, Out* y, float* rstd,
                            int64_t d) {
  __shared__ double red[kThreads];
  const float* xr = x + blockIdx.x * d;
  Out* yr = y + blockIdx.x * d;
  double s = 0.0;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) s += double(xr[j]) * xr[j];
  const double ms = block_reduce<double>(s, red, false) / double(d);
  const float inv = static_cast<float>(1.0 / sqrt(ms + double(eps)));
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) put(yr + j, xr[j] * inv * w[j]);
  if (rstd && threadIdx.x == 0) rstd[blockIdx.x] = inv;
}

// dx_i = r (w_i dy_i - x_i r^2 (sum_j dy_j w_j x_j) / D); dw_j += dy_j x_j r.
__global__ void rmsnorm_bwd(const float* x, const float* w, const float* rstd, const float* dy,
                            float* dx, int64_t d) {
  __shared__ double red[kThreads];
  const int64_t r = blockIdx.x;
  const float* xr = x + r * d;
  const float* gr = dy + r * d;
  float* dxr = dx + r * d;
  const float inv = rstd[r];
  double s = 0.0;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) s += double(gr[j] * w[j]) * xr[j];
  const double dot = block_reduce<double>(s, red, false);
  const float c = static_cast<float>(dot / double(d)) * inv * inv;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) dxr[j] = inv * (w[j] * gr[j] - xr[j] * c);
}

__global__ void rope(float* x, const int32_t* pos, int64_t n, int64_t h, int64_t e, float theta,
                     double sign) {
  const int64_t half = e / 2, pairs = n * h * half;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < pairs; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t k = i % half, head = i / half;  // head = row * h + head index
    const int64_t row = head / h;
    const double angle = sign * double(pos[row]) * pow(double(theta), -2.0 * double(k) / double(e));
    const float c = static_cast<float>(cos(angle)), s = static_cast<float>(sin(angle));
    float* x1 = x + head * e + k;
    float* x2 = x1 + half;
    const float a = *x1, b = *x2;
    *x1 = a * c - b * s;
    *x2 = b * c + a * s;
  }
}

template <class Out>
__global__ void swiglu_fwd(const float* g, const float* u, Out* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    put(out + i, g[i] / (1.0f + expf(-g[i])) * u[i]);
}

// silu(g) = g s, s = sigmoid(g): d silu / dg = s (1 + g (1 - s)).
template <class Out>
__global__ void swiglu_bwd(const float* g, const float* u, const float* dout, Out* dg, Out* du,
                           int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i], s = 1.0f / (1.0f + expf(-gi)), d = dout[i];
    const float ui = u[i];
    put(du + i, d * gi * s);
    put(dg + i, d * ui * s * (1.0f + gi * (1.0f - s)));
  }
}

// The gain gradient's term of row r, column j: dy x r, the product in float as on the CPU.
struct GainTerm {
  const float *dy, *x, *rstd;
  int64_t d;
  __device__ double operator()(int64_t r, int64_t j) const {
    return static_cast<double>(dy[r * d + j] * x[r * d + j] * rstd[r]);
  }
};

// out[j] += sum over rows r of term(r, j) for j < d, in row order within chunks of rows and
// chunk order across them.
template <class Term>
void add_column_sums(const char* op, int64_t n, int64_t d, float* out, Term term) {
  constexpr int64_t kChunkRows = 64;
  const int64_t chunks = std::min<int64_t>((n + kChunkRows - 1) / kChunkRows, 65535);
  const int64_t rows_per = (n + chunks - 1) / chunks;
  core::Tensor partial = core::Tensor::empty({chunks * d}, core::DType::I64, core::Device::Cuda);
  double* p = reinterpret_cast<double*>(partial.raw());
  const unsigned cols = static_cast<unsigned>((d + ordered::kThreads - 1) / ordered::kThreads);
  ordered::column_partials<<<dim3(cols, static_cast<unsigned>(chunks)), ordered::kThreads, 0,
                             stream()>>>(term, n, d, rows_per, p);
  check_launch(op);
  ordered::column_finish<<<cols, ordered::kThreads, 0, stream()>>>(p, chunks, d, out);
  check_launch(op);
}

// A device output that is f32 or bf16 (a GEMM operand in mixed precision).
void require_output(const char* op, const char* name, const Tensor& t) {
  OPD_CHECK(t.defined() && t.device() == core::Device::Cuda &&
                (t.dtype() == core::DType::F32 || t.dtype() == core::DType::BF16),
            op, ": ", name, " must be a CUDA f32 or bf16 tensor, got ", t.describe());
}

void rope_apply(const char* op, Tensor& x, const Tensor& pos, float theta, double sign) {
  require_device(op, "x", x);
  require_device(op, "pos", pos, core::DType::I32);
  OPD_CHECK(x.ndim() == 3 && x.dim(2) % 2 == 0 && pos.numel() == x.dim(0), op, ": x ",
            x.describe(), " pos ", pos.describe());
  const int64_t pairs = x.dim(0) * x.dim(1) * (x.dim(2) / 2);
  if (pairs == 0) return;
  rope<<<blocks_for(pairs), kThreads, 0, stream()>>>(x.data<float>(), pos.data<int32_t>(), x.dim(0), x.dim(1),
                                       x.dim(2), theta, sign);
  check_launch(op);
}

}  // namespace

void rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, Tensor& y, Tensor* rstd) {
  require_device("rmsnorm_forward", "x", x);
  require_device("rmsnorm_forward", "w", w);
  require_output("rmsnorm_forward", "y", y);
  const int64_t d = w.numel(), n = d > 0 ? x.numel() / d : 0;
  OPD_CHECK(d > 0 && x.dim(-1) == d && y.numel() == x.numel(), "rmsnorm_forward: ", x.describe(),
            " w ", w.describe(), " y ", y.describe());
  if (rstd) require_device("rmsnorm_forward", "rstd", *rstd);
  if (n == 0) return;
  float* r = rstd ? rstd->data<float>() : nullptr;
  if (y.dtype() == core::DType::BF16)
    rmsnorm_fwd<<<static_cast<unsigned>(n), kThreads, 0, stream()>>>(
        x.data<float>(), w.data<float>(), eps, y.data<uint16_t>(), r, d);
  else
    rmsnorm_fwd<<<static_cast<unsigned>(n), kThreads, 0, stream()>>>(
        x.data<float>(), w.data<float>(), eps, y.data<float>(), r, d);
  check_launch("rmsnorm_forward");
}

void rmsnorm_backward(const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dy,
                      Tensor& dx, Tensor& dw) {
  for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"x", &x}, {"w", &w},
                                {"rstd", &rstd}, {"dy", &dy}, {"dx", &dx}, {"dw", &dw}})
    require_device("rmsnorm_backward", name, *t);
  const int64_t d = w.numel(), n = d > 0 ? x.numel() / d : 0;
  OPD_CHECK(d > 0 && dw.numel() == d && dy.numel() == x.numel() && dx.numel() == x.numel() &&
                rstd.numel() == n,
            "rmsnorm_backward: shapes of ", x.describe(), " ", w.describe(), " ", rstd.describe());
  if (n == 0) return;
  // dw first: dx may alias dy (the in-place backward), which the dx kernel overwrites.
  add_column_sums("rmsnorm_backward (dw)", n, d, dw.data<float>(),
                  GainTerm{dy.data<float>(), x.data<float>(), rstd.data<float>(), d});
  rmsnorm_bwd<<<static_cast<unsigned>(n), kThreads, 0, stream()>>>(x.data<float>(), w.data<float>(),
                                                      rstd.data<float>(), dy.data<float>(),
                                                      dx.data<float>(), d);
  check_launch("rmsnorm_backward");
}

void rope_forward(Tensor& x, const Tensor& pos, float theta) { rope_apply("rope_forward", x, pos, theta, 1.0); }
void rope_backward(Tensor& dx, const Tensor& pos, float theta) { rope_apply("rope_backward", dx, pos, theta, -1.0); }

void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& out) {
  require_device("swiglu_forward", "gate", gate);
  require_device("swiglu_forward", "up", up);
  require_output("swiglu_forward", "out", out);
  OPD_CHECK(gate.numel() == up.numel() && gate.numel() == out.numel(), "swiglu_forward: sizes");
  if (out.dtype() == core::DType::BF16)
    swiglu_fwd<<<blocks_for(gate.numel()), kThreads, 0, stream()>>>(
        gate.data<float>(), up.data<float>(), out.data<uint16_t>(), gate.numel());
  else
    swiglu_fwd<<<blocks_for(gate.numel()), kThreads, 0, stream()>>>(
        gate.data<float>(), up.data<float>(), out.data<float>(), gate.numel());
  check_launch("swiglu_forward");
}

void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& d_out, Tensor& d_gate,
                     Tensor& d_up) {
  for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"gate", &gate}, {"up", &up},
                                {"d_out", &d_out}})
    require_device("swiglu_backward", name, *t);
  require_output("swiglu_backward", "d_gate", d_gate);
  require_output("swiglu_backward", "d_up", d_up);
  const int64_t n = gate.numel();
  OPD_CHECK(up.numel() == n && d_out.numel() == n && d_gate.numel() == n && d_up.numel() == n &&
                d_gate.dtype() == d_up.dtype(),
            "swiglu_backward: sizes or dtypes of ", d_gate.describe(), " ", d_up.describe());
  if (d_gate.dtype() == core::DType::BF16)
    swiglu_bwd<<<blocks_for(n), kThreads, 0, stream()>>>(gate.data<float>(), up.data<float>(),
                                                         d_out.data<float>(), d_gate.data<uint16_t>(),
                                                         d_up.data<uint16_t>(), n);
  else
    swiglu_bwd<<<blocks_for(n), kThreads, 0, stream()>>>(gate.data<float>(), up.data<float>(),
                                                         d_out.data<float>(), d_gate.data<float>(),
                                                         d_up.data<float>(), n);
  check_launch("swiglu_backward");
}

}  // namespace opd::backend::cuda
