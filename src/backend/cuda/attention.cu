// CUDA causal grouped-query attention (backend/ops.hpp contract): forward optionally keeping P,
// backward from P. One block per query row (b, h, t): the row's scores over its visible keys
// (j <= q_pos, j < S) live in shared memory, the softmax runs as block reductions, and the output
// and gradients are accumulated by threads over the head dimension. dk and dv sum over the
// queries and heads that read a key, with atomics.
//
// The forward keeps P [B, H, T, S] or only each row's log-sum-exp; the backward from the lse
// recomputes the row's P in shared memory, so training never holds the T x S scores.
#include "backend/cuda/block_reduce.cuh"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_ops.hpp"

namespace opd::backend::cuda {

namespace {

constexpr int kAttnThreads = 128;

// Dimensions, and the row (b, t, h) of block `blockIdx.x` in [B, H, T] order.
struct Dims {
  int64_t B, T, H, E, S, G;
};

__global__ void attn_fwd(const float* q, const float* k, const float* v, const int32_t* q_pos,
                         float scale, float* out, float* probs, float* lse, Dims d) {
  extern __shared__ float sc[];  // [S] scores, then kAttnThreads reduction slots
  float* red = sc + d.S;
  const int64_t row = blockIdx.x;  // (b, h, t)
  const int64_t t = row % d.T, h = (row / d.T) % d.H, b = row / (d.T * d.H);
  const int64_t g = h / (d.H / d.G);
  const int64_t sv = min(max(int64_t(q_pos[b * d.T + t]) + 1, int64_t(0)), d.S);
  const float* qr = q + ((b * d.T + t) * d.H + h) * d.E;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < sv; j += blockDim.x) {
    const float* kr = k + ((b * d.S + j) * d.G + g) * d.E;
    float s = 0.0f;
    for (int64_t e = 0; e < d.E; ++e) s += qr[e] * kr[e];
    sc[j] = s * scale;
    mx = fmaxf(mx, sc[j]);
  }
  mx = block_reduce<float>(mx, red, true);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < sv; j += blockDim.x) {
    sc[j] = expf(sc[j] - mx);
    sum += sc[j];
  }
  sum = block_reduce<float>(sum, red, false);
  for (int64_t j = threadIdx.x; j < sv; j += blockDim.x) sc[j] /= sum;
  if (lse && threadIdx.x == 0) lse[(b * d.H + h) * d.T + t] = sv > 0 ? mx + logf(sum) : -INFINITY;
  __syncthreads();
  float* orow = out + ((b * d.T + t) * d.H + h) * d.E;
  for (int64_t e = threadIdx.x; e < d.E; e += blockDim.x) {
    float acc = 0.0f;
    for (int64_t j = 0; j < sv; ++j) acc += sc[j] * v[((b * d.S + j) * d.G + g) * d.E + e];
    orow[e] = acc;  // 0 for a row without visible keys
  }
  if (probs) {
    float* pr = probs + ((b * d.H + h) * d.T + t) * d.S;
    for (int64_t j = threadIdx.x; j < d.S; j += blockDim.x) pr[j] = j < sv ? sc[j] : 0.0f;
  }
}

// dP_j = dO . v_j; dS_j = P_j (dP_j - sum_i P_i dP_i) scale; dq = dS k; dk_j += dS_j q;
// dv_j += P_j dO.
// P comes from probs, or (probs null) is recomputed from q, k, q_pos and lse into shared memory.
__global__ void attn_bwd(const float* q, const float* k, const float* v, const float* probs,
                         const int32_t* q_pos, const float* lse, const float* d_out, float scale,
                         float* dq, float* dk, float* dv, Dims d) {
  extern __shared__ float ds[];  // [S] dS, [S] P (recomputed), then the reduction slots
  float* p_row = ds + d.S;
  float* red = p_row + d.S;
  const int64_t row = blockIdx.x;
  const int64_t t = row % d.T, h = (row / d.T) % d.H, b = row / (d.T * d.H);
  const int64_t g = h / (d.H / d.G);
  const float* go = d_out + ((b * d.T + t) * d.H + h) * d.E;
  const float* qr = q + ((b * d.T + t) * d.H + h) * d.E;
  const float* pr = probs ? probs + ((b * d.H + h) * d.T + t) * d.S : p_row;
  if (!probs) {
    const int64_t sv = min(max(int64_t(q_pos[b * d.T + t]) + 1, int64_t(0)), d.S);
    const float l = lse[(b * d.H + h) * d.T + t];
    for (int64_t j = threadIdx.x; j < d.S; j += blockDim.x) {
      float s = 0.0f;
      if (j < sv) {
        const float* kr = k + ((b * d.S + j) * d.G + g) * d.E;
        for (int64_t e = 0; e < d.E; ++e) s += qr[e] * kr[e];
      }
      p_row[j] = j < sv ? expf(s * scale - l) : 0.0f;
    }
    __syncthreads();
  }
  float dot = 0.0f;
  for (int64_t j = threadIdx.x; j < d.S; j += blockDim.x) {
    float dp = 0.0f;
    if (pr[j] != 0.0f) {
      const float* vr = v + ((b * d.S + j) * d.G + g) * d.E;
      for (int64_t e = 0; e < d.E; ++e) dp += go[e] * vr[e];
    }
    ds[j] = dp;
    dot += pr[j] * dp;
  }
  dot = block_reduce<float>(dot, red, false);
  for (int64_t j = threadIdx.x; j < d.S; j += blockDim.x) ds[j] = pr[j] * (ds[j] - dot) * scale;
  __syncthreads();
  float* dqr = dq + ((b * d.T + t) * d.H + h) * d.E;
  for (int64_t e = threadIdx.x; e < d.E; e += blockDim.x) {
    float acc = 0.0f;
    for (int64_t j = 0; j < d.S; ++j)
      if (ds[j] != 0.0f) acc += ds[j] * k[((b * d.S + j) * d.G + g) * d.E + e];
    dqr[e] = acc;
  }
  for (int64_t i = threadIdx.x; i < d.S * d.E; i += blockDim.x) {
    const int64_t j = i / d.E, e = i % d.E;
    if (pr[j] == 0.0f && ds[j] == 0.0f) continue;
    const int64_t at = ((b * d.S + j) * d.G + g) * d.E + e;
    atomicAdd(&dk[at], ds[j] * qr[e]);
    atomicAdd(&dv[at], pr[j] * go[e]);
  }
}

Dims check_qkv(const char* op, const Tensor& q, const Tensor& k, const Tensor& v) {
  require_device(op, "q", q);
  require_device(op, "k", k);
  require_device(op, "v", v);
  OPD_CHECK(q.ndim() == 4 && k.ndim() == 4 && v.shape() == k.shape() && k.dim(0) == q.dim(0) &&
                k.dim(3) == q.dim(3) && k.dim(2) > 0 && q.dim(2) % k.dim(2) == 0,
            op, ": q ", q.describe(), " k ", k.describe(), " v ", v.describe());
  const Dims d{q.dim(0), q.dim(1), q.dim(2), q.dim(3), k.dim(1), k.dim(2)};
  OPD_CHECK((2 * d.S + kAttnThreads) * int64_t(sizeof(float)) <= 48 * 1024, op, ": ", d.S,
            " keys exceed this kernel's shared-memory rows (6k keys)");
  return d;
}

}  // namespace

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_pos,
                       float scale, Tensor& out, Tensor* probs, Tensor* lse) {
  const Dims d = check_qkv("attention_forward", q, k, v);
  require_device("attention_forward", "q_pos", q_pos, core::DType::I32);
  require_device("attention_forward", "out", out);
  OPD_CHECK(q_pos.numel() == d.B * d.T && out.shape() == q.shape(), "attention_forward: q_pos ",
            q_pos.describe(), " out ", out.describe());
  if (probs) {
    require_device("attention_forward", "probs", *probs);
    OPD_CHECK(probs->shape() == core::Shape({d.B, d.H, d.T, d.S}), "attention_forward: probs ",
              probs->describe());
  }
  if (lse) {
    require_device("attention_forward", "lse", *lse);
    OPD_CHECK(lse->shape() == core::Shape({d.B, d.H, d.T}), "attention_forward: lse ", lse->describe());
  }
  const int64_t rows = d.B * d.H * d.T;
  if (rows == 0) return;
  const std::size_t shared = static_cast<std::size_t>(d.S + kAttnThreads) * sizeof(float);
  attn_fwd<<<static_cast<unsigned>(rows), kAttnThreads, shared>>>(
      q.data<float>(), k.data<float>(), v.data<float>(), q_pos.data<int32_t>(), scale,
      out.data<float>(), probs ? probs->data<float>() : nullptr,
      lse ? lse->data<float>() : nullptr, d);
  check_launch("attention_forward");
}

namespace {

void launch_backward(const char* op, const Dims& d, const Tensor& q, const Tensor& k,
                     const Tensor& v, const float* probs, const int32_t* q_pos, const float* lse,
                     const Tensor& d_out, float scale, Tensor& dq, Tensor& dk, Tensor& dv) {
  for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"d_out", &d_out},
                                {"dq", &dq}, {"dk", &dk}, {"dv", &dv}})
    require_device(op, name, *t);
  OPD_CHECK(d_out.shape() == q.shape() && dq.shape() == q.shape() && dk.shape() == k.shape() &&
                dv.shape() == v.shape(),
            op, ": gradient shapes");
  check(cudaMemset(dk.raw(), 0, dk.bytes()), "attention backward: zero dk");
  check(cudaMemset(dv.raw(), 0, dv.bytes()), "attention backward: zero dv");
  const int64_t rows = d.B * d.H * d.T;
  if (rows == 0) return;
  const std::size_t shared = static_cast<std::size_t>(2 * d.S + kAttnThreads) * sizeof(float);
  attn_bwd<<<static_cast<unsigned>(rows), kAttnThreads, shared>>>(
      q.data<float>(), k.data<float>(), v.data<float>(), probs, q_pos, lse, d_out.data<float>(),
      scale, dq.data<float>(), dk.data<float>(), dv.data<float>(), d);
  check_launch(op);
}

}  // namespace

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,
                        const Tensor& d_out, float scale, Tensor& dq, Tensor& dk, Tensor& dv) {
  const Dims d = check_qkv("attention_backward", q, k, v);
  require_device("attention_backward", "probs", probs);
  OPD_CHECK(probs.shape() == core::Shape({d.B, d.H, d.T, d.S}), "attention_backward: probs ",
            probs.describe());
  launch_backward("attention_backward", d, q, k, v, probs.data<float>(), nullptr, nullptr, d_out,
                  scale, dq, dk, dv);
}

void attention_backward_from_lse(const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& q_pos, const Tensor& lse, const Tensor& d_out,
                                 float scale, Tensor& dq, Tensor& dk, Tensor& dv) {
  const Dims d = check_qkv("attention_backward_from_lse", q, k, v);
  require_device("attention_backward_from_lse", "q_pos", q_pos, core::DType::I32);
  require_device("attention_backward_from_lse", "lse", lse);
  OPD_CHECK(q_pos.numel() == d.B * d.T && lse.shape() == core::Shape({d.B, d.H, d.T}),
            "attention_backward_from_lse: q_pos ", q_pos.describe(), " lse ", lse.describe());
  launch_backward("attention_backward_from_lse", d, q, k, v, nullptr, q_pos.data<int32_t>(),
                  lse.data<float>(), d_out, scale, dq, dk, dv);
}

}  // namespace opd::backend::cuda
