// CUDA vocabulary-chunked LM head (backend/ops.hpp): logits = (h w^T) / temperature formed one
// chunk of columns at a time with cuBLASLt into a [N, chunk] buffer, never [N, V].
//  - lm_head_stats: a running (max m, s = sum e, t = sum e (l - m)) per row in double, rescaled
//    when the max moves (as the CPU reference), then lse = m + log s and H = log s - t / s; the
//    target logit is picked up in the chunk that holds it (0 when it lies in another shard).
//  - lm_head_cross_entropy_backward: per chunk, dlogits = d_loss (softmax - onehot) / T for the
//    rows with a target and a nonzero d_loss, then dh += dlogits w_c and dw_c += dlogits^T h.
// h and w may be bf16 (mixed precision): the chunk's logits are still formed in fp32, and the
// backward rounds each chunk's dlogits to bf16 for its two products (fp32 accumulation).
#include "backend/cuda/block_reduce.cuh"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_ops.hpp"

namespace opd::backend::cuda {

namespace {

constexpr int kRowThreads = 256;

// One block per row of the chunk L [N, cn] (columns c0.. of this shard).
__global__ void stats_chunk(const float* L, int64_t cn, int64_t c0, int64_t v0, const int32_t* targets,
                            float* target_logit, double* M, double* S, double* T, bool want_entropy) {
  __shared__ double red[kRowThreads];
  const int64_t r = blockIdx.x;
  const float* lr = L + r * cn;
  double cm = -INFINITY;
  for (int64_t j = threadIdx.x; j < cn; j += blockDim.x) cm = fmax(cm, double(lr[j]));
  cm = block_reduce<double>(cm, red, true);
  if (targets && target_logit && threadIdx.x == 0) {
    const int64_t t = int64_t(targets[r]) - v0;
    if (t >= c0 && t < c0 + cn) target_logit[r] = lr[t - c0];
  }
  const double m_old = M[r], m_new = fmax(m_old, cm);
  if (!(m_new > -INFINITY)) return;  // nothing finite yet (uniform across the block)
  double s = 0.0, t = 0.0;
  for (int64_t j = threadIdx.x; j < cn; j += blockDim.x) {
    const double d = double(lr[j]) - m_new, e = exp(d);
    s += e;
    if (want_entropy && e > 0.0) t += e * d;
  }
  s = block_reduce<double>(s, red, false);
  t = block_reduce<double>(t, red, false);
  if (threadIdx.x != 0) return;
  if (S[r] > 0.0) {  // rescale what earlier chunks summed relative to m_old
    const double a = exp(m_old - m_new);
    T[r] = a * (T[r] + (m_old - m_new) * S[r]) + t;
    S[r] = a * S[r] + s;
  } else {
    T[r] = t;
    S[r] = s;
  }
  M[r] = m_new;
}

__global__ void stats_init(double* M, double* S, double* T, float* target_logit, int64_t n) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < n; r += int64_t(gridDim.x) * blockDim.x) {
    M[r] = -INFINITY;
    S[r] = 0.0;
    T[r] = 0.0;
    if (target_logit) target_logit[r] = 0.0f;
  }
}

__global__ void stats_finish(const double* M, const double* S, const double* T, float* lse,
                             float* entropy, int64_t n) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < n; r += int64_t(gridDim.x) * blockDim.x) {
    const double log_s = log(S[r]);
    lse[r] = float(M[r] + log_s);
    if (entropy) entropy[r] = float(log_s - T[r] / S[r]);
  }
}

// L [N, cn] -> dlogits in place; rows without a target or with d_loss 0 become 0.
__global__ void ce_dlogits(float* L, int64_t cn, int64_t c0, int64_t v0, const int32_t* targets,
                           const float* lse, const float* d_loss, float inv_t) {
  const int64_t r = blockIdx.x;
  float* lr = L + r * cn;
  const bool active = targets[r] >= 0 && d_loss[r] != 0.0f;
  const float g = d_loss[r] * inv_t, l0 = lse[r];
  const int64_t t = int64_t(targets[r]) - v0 - c0;
  for (int64_t j = threadIdx.x; j < cn; j += blockDim.x)
    lr[j] = active ? g * expf(lr[j] - l0) - (j == t ? g : 0.0f) : 0.0f;
}

struct Head {
  int64_t N, D, V;
};

Head check_head(const char* op, const Tensor& h, const Tensor& w, float temperature, int64_t chunk,
                const VocabRange& range) {
  require_device(op, "h", h, h.dtype() == core::DType::BF16 ? core::DType::BF16 : core::DType::F32);
  require_device(op, "w", w, h.dtype());
  OPD_CHECK(h.ndim() == 2 && w.ndim() == 2 && w.dim(1) == h.dim(1) && w.dim(0) >= 1, op, ": h ",
            h.describe(), " w ", w.describe());
  OPD_CHECK(temperature > 0.0f && chunk >= 1, op, ": temperature ", temperature, " chunk ", chunk);
  OPD_CHECK(range.total == 0 ? range.begin == 0 : range.begin + w.dim(0) <= range.total, op,
            ": shard [", range.begin, ", ", range.begin + w.dim(0), ") of ", range.total);
  return {h.dim(0), h.dim(1), w.dim(0)};
}

}  // namespace

void lm_head_stats(const Tensor& h, const Tensor& w, const Tensor* targets, float temperature,
                   int64_t chunk, HeadStats& out, const VocabRange& range) {
  const Head d = check_head("lm_head_stats", h, w, temperature, chunk, range);
  require_device("lm_head_stats", "out.lse", out.lse);
  const bool want_target = out.target_logit.defined(), want_entropy = out.entropy.defined();
  if (want_target) {
    OPD_CHECK(targets, "lm_head_stats: out.target_logit asks for targets, none given");
    require_device("lm_head_stats", "targets", *targets, core::DType::I32);
    require_device("lm_head_stats", "out.target_logit", out.target_logit);
  }
  if (want_entropy) require_device("lm_head_stats", "out.entropy", out.entropy);
  if (d.N == 0) return;
  const int64_t cn_max = std::min(chunk, d.V);
  Tensor L = Tensor::empty({d.N, cn_max}, core::DType::F32, core::Device::Cuda);
  Tensor state = Tensor::empty({3 * d.N}, core::DType::I64, core::Device::Cuda);  // 3 x [N] doubles
  double* M = static_cast<double*>(state.raw());
  double* S = M + d.N;
  double* T = S + d.N;
  float* tl = want_target ? out.target_logit.data<float>() : nullptr;
  stats_init<<<blocks_for(d.N), kThreads, 0, stream()>>>(M, S, T, tl, d.N);
  check_launch("lm_head_stats: init");
  for (int64_t c0 = 0; c0 < d.V; c0 += cn_max) {
    const int64_t cn = std::min(cn_max, d.V - c0);
    Tensor Lc = L.view({L.numel()}).slice(0, d.N * cn).view({d.N, cn});
    gemm(h, false, w.slice(c0, c0 + cn), true, Lc, 1.0f / temperature, 0.0f);
    stats_chunk<<<static_cast<unsigned>(d.N), kRowThreads, 0, stream()>>>(
        Lc.data<float>(), cn, c0, range.begin, want_target ? targets->data<int32_t>() : nullptr, tl,
        M, S, T, want_entropy);
    check_launch("lm_head_stats: chunk");
  }
  stats_finish<<<blocks_for(d.N), kThreads, 0, stream()>>>(M, S, T, out.lse.data<float>(),
                                             want_entropy ? out.entropy.data<float>() : nullptr, d.N);
  check_launch("lm_head_stats: finish");
}

void lm_head_cross_entropy_backward(const Tensor& h, const Tensor& w, const Tensor& targets,
                                    const Tensor& lse, const Tensor& d_loss, float temperature,
                                    int64_t chunk, Tensor& dh, Tensor& dw, const VocabRange& range) {
  const char* op = "lm_head_cross_entropy_backward";
  const Head d = check_head(op, h, w, temperature, chunk, range);
  require_device(op, "targets", targets, core::DType::I32);
  for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"lse", &lse},
                                {"d_loss", &d_loss}, {"dh", &dh}, {"dw", &dw}})
    require_device(op, name, *t);
  OPD_CHECK(dh.shape() == h.shape() && dw.shape() == w.shape() && lse.numel() == d.N &&
                d_loss.numel() == d.N && targets.numel() == d.N,
            op, ": shapes");
  check(cudaMemset(dh.raw(), 0, dh.bytes()), "lm_head backward: zero dh");
  if (d.N == 0) return;
  const int64_t cn_max = std::min(chunk, d.V);
  Tensor L = Tensor::empty({d.N, cn_max}, core::DType::F32, core::Device::Cuda);
  const bool bf16 = h.dtype() == core::DType::BF16;
  Tensor Lb = bf16 ? Tensor::empty({d.N, cn_max}, core::DType::BF16, core::Device::Cuda) : Tensor();
  for (int64_t c0 = 0; c0 < d.V; c0 += cn_max) {
    const int64_t cn = std::min(cn_max, d.V - c0);
    Tensor Lc = L.view({L.numel()}).slice(0, d.N * cn).view({d.N, cn});
    gemm(h, false, w.slice(c0, c0 + cn), true, Lc, 1.0f / temperature, 0.0f);
    ce_dlogits<<<static_cast<unsigned>(d.N), kRowThreads, 0, stream()>>>(
        Lc.data<float>(), cn, c0, range.begin, targets.data<int32_t>(), lse.data<float>(),
        d_loss.data<float>(), 1.0f / temperature);
    check_launch("lm_head backward: dlogits");
    Tensor dw_c = dw.slice(c0, c0 + cn);
    Tensor G = Lc;  // the products' left operand, in the dtype of h and w
    if (bf16) {
      G = Lb.view({Lb.numel()}).slice(0, d.N * cn).view({d.N, cn});
      cast(Lc, G);
    }
    gemm(G, false, w.slice(c0, c0 + cn), false, dh, 1.0f, 1.0f);
    gemm(G, true, h, false, dw_c, 1.0f, 1.0f);
  }
}

}  // namespace opd::backend::cuda
