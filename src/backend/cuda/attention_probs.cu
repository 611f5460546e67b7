// The simple attention kernels that keep P [B, H, T, S] (a test and debugging path; training
// keeps the lse and runs the flash kernels of attention_forward.cu / attention_backward.cu).
// One block per query row (b, h, t): the row's scores over its visible keys live in shared
// memory, the softmax runs as block reductions, and the output and gradients are accumulated by
// threads over the head dimension. dk and dv sum over the queries and heads that read a key, with
// atomics. S is bounded by the 48 KB of shared memory a block gets without opting in.
#include "backend/cuda/attention_common.cuh"
#include "backend/cuda/block_reduce.cuh"

namespace opd::backend::cuda::attn {

namespace {

constexpr int kRowThreads = 128;

__global__ void probs_fwd(const Elem* q, const Elem* k, const Elem* v, const int32_t* q_pos,
                          float scale, float* out, float* probs, float* lse, Shape d) {
  extern __shared__ float sc[];  // [S] scores, then kRowThreads reduction slots
  float* red = sc + d.S;
  const int64_t row = blockIdx.x;  // (b, h, t)
  const int t = static_cast<int>(row % d.T), h = static_cast<int>((row / d.T) % d.H);
  const int b = static_cast<int>(row / (int64_t(d.T) * d.H));
  const int g = h / d.rep();
  const int sv = visible_keys(q_pos[int64_t(b) * d.T + t], d.S);
  const Elem* qr = q + q_offset(d, b, t, h);
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < sv; j += blockDim.x) {
    const Elem* kr = k + kv_offset(d, b, j, g);
    float s = 0.0f;
    for (int e = 0; e < d.E; ++e) s += load(qr + e) * load(kr + e);
    sc[j] = s * scale;
    mx = fmaxf(mx, sc[j]);
  }
  mx = block_reduce<float>(mx, red, true);
  float sum = 0.0f;
  for (int j = threadIdx.x; j < sv; j += blockDim.x) {
    sc[j] = expf(sc[j] - mx);
    sum += sc[j];
  }
  sum = block_reduce<float>(sum, red, false);
  for (int j = threadIdx.x; j < sv; j += blockDim.x) sc[j] /= sum;
  if (lse && threadIdx.x == 0) lse[lse_offset(d, b, h, t)] = sv > 0 ? mx + logf(sum) : -INFINITY;
  __syncthreads();
  float* orow = out + q_offset(d, b, t, h);
  for (int e = threadIdx.x; e < d.E; e += blockDim.x) {
    float acc = 0.0f;
    for (int j = 0; j < sv; ++j) acc += sc[j] * load(v + kv_offset(d, b, j, g) + e);
    orow[e] = acc;  // 0 for a row without visible keys
  }
  float* pr = probs + (int64_t(b) * d.H + h) * d.T * int64_t(d.S) + int64_t(t) * d.S;
  for (int j = threadIdx.x; j < d.S; j += blockDim.x) pr[j] = j < sv ? sc[j] : 0.0f;
}

// dP_j = dO . v_j; dS_j = P_j (dP_j - sum_i P_i dP_i) scale; dq = dS k; dk_j += dS_j q;
// dv_j += P_j dO.
__global__ void probs_bwd(const Elem* q, const Elem* k, const Elem* v, const float* probs,
                          const Elem* d_out, float scale, float* dq, float* dk, float* dv,
                          Shape d) {
  extern __shared__ float ds[];  // [S] dS, then the reduction slots
  float* red = ds + d.S;
  const int64_t row = blockIdx.x;
  const int t = static_cast<int>(row % d.T), h = static_cast<int>((row / d.T) % d.H);
  const int b = static_cast<int>(row / (int64_t(d.T) * d.H));
  const int g = h / d.rep();
  const Elem* go = d_out + q_offset(d, b, t, h);
  const Elem* qr = q + q_offset(d, b, t, h);
  const float* pr = probs + (int64_t(b) * d.H + h) * d.T * int64_t(d.S) + int64_t(t) * d.S;
  float dot = 0.0f;
  for (int j = threadIdx.x; j < d.S; j += blockDim.x) {
    float dp = 0.0f;
    if (pr[j] != 0.0f) {
      const Elem* vr = v + kv_offset(d, b, j, g);
      for (int e = 0; e < d.E; ++e) dp += load(go + e) * load(vr + e);
    }
    ds[j] = dp;
    dot += pr[j] * dp;
  }
  dot = block_reduce<float>(dot, red, false);
  for (int j = threadIdx.x; j < d.S; j += blockDim.x) ds[j] = pr[j] * (ds[j] - dot) * scale;
  __syncthreads();
  float* dqr = dq + q_offset(d, b, t, h);
  for (int e = threadIdx.x; e < d.E; e += blockDim.x) {
    float acc = 0.0f;
    for (int j = 0; j < d.S; ++j)
      if (ds[j] != 0.0f) acc += ds[j] * load(k + kv_offset(d, b, j, g) + e);
    dqr[e] = acc;
  }
  for (int64_t i = threadIdx.x; i < int64_t(d.S) * d.E; i += blockDim.x) {
    const int j = static_cast<int>(i / d.E), e = static_cast<int>(i % d.E);
    if (pr[j] == 0.0f && ds[j] == 0.0f) continue;
    const int64_t at = kv_offset(d, b, j, g) + e;
    atomicAdd(&dk[at], ds[j] * load(qr + e));
    atomicAdd(&dv[at], pr[j] * load(go + e));
  }
}

std::size_t row_shared(const char* op, const Shape& s) {
  const std::size_t bytes = static_cast<std::size_t>(s.S + kRowThreads) * sizeof(float);
  OPD_CHECK(bytes <= 48 * 1024, op, ": ", s.S,
            " keys exceed the probs kernel's shared-memory row (12k keys); use the lse path");
  return bytes;
}

}  // namespace

void probs_forward(const Shape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& q_pos, float scale, Tensor& out, Tensor& probs, Tensor* lse) {
  const int64_t rows = int64_t(s.B) * s.H * s.T;
  if (rows == 0) return;
  probs_fwd<<<static_cast<unsigned>(rows), kRowThreads, row_shared("attention_forward", s), stream()>>>(
      q.data<Elem>(), k.data<Elem>(), v.data<Elem>(), q_pos.data<int32_t>(), scale,
      out.data<float>(), probs.data<float>(), lse ? lse->data<float>() : nullptr, s);
  check_launch("attention_forward (probs)");
}

void probs_backward(const Shape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                    const Tensor& probs, const Tensor& d_out, float scale, Tensor& dq, Tensor& dk,
                    Tensor& dv) {
  check(cudaMemset(dk.raw(), 0, dk.bytes()), "attention_backward: zero dk");
  check(cudaMemset(dv.raw(), 0, dv.bytes()), "attention_backward: zero dv");
  const int64_t rows = int64_t(s.B) * s.H * s.T;
  if (rows == 0) return;
  probs_bwd<<<static_cast<unsigned>(rows), kRowThreads, row_shared("attention_backward", s), stream()>>>(
      q.data<Elem>(), k.data<Elem>(), v.data<Elem>(), probs.data<float>(), d_out.data<Elem>(),
      scale, dq.data<float>(), dk.data<float>(), dv.data<float>(), s);
  check_launch("attention_backward (probs)");
}

}  // namespace opd::backend::cuda::attn
