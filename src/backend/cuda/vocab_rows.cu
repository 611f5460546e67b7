// CUDA row-wise vocabulary ops on materialised logits x [N, V] (log-softmax, log-sum-exp,
// entropy, top-k), the KV-cache scatter and the column gather. One block per row; row
// statistics as block reductions in double, like the CPU reference. Top-k: each thread keeps the
// best k of its strided share (k <= 64), thread 0 merges the lists (ties to the lower id).
#include "backend/cuda/block_reduce.cuh"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_ops.hpp"

namespace opd::backend::cuda {

namespace {

constexpr int kRowThreads = 256;
constexpr int kTopkThreads = 64, kMaxK = 64;

// mode 0: log-softmax into out [N, V]; 1: log-sum-exp into out [N]; 2: entropy into out [N].
__global__ void softmax_family(const float* x, float* out, int64_t V, int mode) {
  __shared__ double red[kRowThreads];
  const float* xr = x + blockIdx.x * V;
  double m = -INFINITY;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) m = fmax(m, double(xr[j]));
  m = block_reduce<double>(m, red, true);
  double s = 0.0, t = 0.0;
  if (isfinite(m)) {
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      const double dlt = double(xr[j]) - m, e = exp(dlt);
      s += e;
      if (e > 0.0) t += e * dlt;
    }
  } else if (threadIdx.x == 0) {
    s = m == -INFINITY ? 0.0 : 1.0;  // as the CPU reference: no finite shift
  }
  s = block_reduce<double>(s, red, false);
  t = block_reduce<double>(t, red, false);
  const double lse = m + log(s);
  if (mode == 0) {
    float* orow = out + blockIdx.x * V;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) orow[j] = float(double(xr[j]) - lse);
  } else if (threadIdx.x == 0) {
    out[blockIdx.x] = mode == 1 ? float(lse) : float(log(s) - t / s);
  }
}

__device__ bool before(float va, int32_t a, float vb, int32_t b) {
  const float ka = va != va ? -INFINITY : va, kb = vb != vb ? -INFINITY : vb;
  return ka > kb || (ka == kb && a < b);
}

__global__ void topk(const float* x, int64_t V, int k, float* vals, int32_t* ids) {
  __shared__ int32_t cand[kTopkThreads * kMaxK];
  __shared__ int32_t count[kTopkThreads];
  const float* xr = x + blockIdx.x * V;
  // This thread's best k, kept sorted (insertion).
  int32_t* mine = cand + threadIdx.x * kMaxK;
  int n = 0;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    const int32_t id = static_cast<int32_t>(j);
    if (n == k && !before(xr[id], id, xr[mine[k - 1]], mine[k - 1])) continue;
    int at = n < k ? n++ : k - 1;
    while (at > 0 && before(xr[id], id, xr[mine[at - 1]], mine[at - 1])) {
      mine[at] = mine[at - 1];
      --at;
    }
    mine[at] = id;
  }
  count[threadIdx.x] = n;
  __syncthreads();
  if (threadIdx.x != 0) return;
  int head[kTopkThreads] = {};
  for (int out = 0; out < k; ++out) {
    int best = -1;
    for (int th = 0; th < blockDim.x; ++th) {
      if (head[th] >= count[th]) continue;
      const int32_t c = cand[th * kMaxK + head[th]];
      if (best < 0 || before(xr[c], c, xr[cand[best * kMaxK + head[best]]], cand[best * kMaxK + head[best]]))
        best = th;
    }
    const int32_t id = cand[best * kMaxK + head[best]++];
    ids[blockIdx.x * k + out] = id;
    vals[blockIdx.x * k + out] = xr[id];
  }
}

__global__ void scatter(const float* src, const int32_t* pos, float* dst, int64_t B, int64_t T,
                        int64_t S, int64_t R) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < B * T * R; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i % R, bt = i / R, b = bt / T;
    dst[(b * S + pos[bt]) * R + r] = src[i];
  }
}

__global__ void gather(const float* x, const int32_t* ids, float* out, int64_t N, int64_t V,
                       int64_t k) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < N * k; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = x[(i / k) * V + ids[i]];
}

void check_logits(const char* op, const Tensor& x) {
  require_device(op, "x", x);
  OPD_CHECK(x.ndim() == 2, op, ": logits must be [N, V], got ", x.describe());
}

}  // namespace

void log_softmax_rows(const Tensor& x, Tensor& out) {
  check_logits("log_softmax_rows", x);
  require_device("log_softmax_rows", "out", out);
  OPD_CHECK(out.shape() == x.shape(), "log_softmax_rows: out ", out.describe());
  if (x.dim(0) == 0) return;
  softmax_family<<<static_cast<unsigned>(x.dim(0)), kRowThreads, 0, stream()>>>(x.data<float>(), out.data<float>(), x.dim(1), 0);
  check_launch("log_softmax_rows");
}

void logsumexp_rows(const Tensor& x, Tensor& out) {
  check_logits("logsumexp_rows", x);
  require_device("logsumexp_rows", "out", out);
  OPD_CHECK(out.numel() == x.dim(0), "logsumexp_rows: out ", out.describe());
  if (x.dim(0) == 0) return;
  softmax_family<<<static_cast<unsigned>(x.dim(0)), kRowThreads, 0, stream()>>>(x.data<float>(), out.data<float>(), x.dim(1), 1);
  check_launch("logsumexp_rows");
}

void entropy_rows(const Tensor& x, Tensor& out) {
  check_logits("entropy_rows", x);
  require_device("entropy_rows", "out", out);
  OPD_CHECK(out.numel() == x.dim(0), "entropy_rows: out ", out.describe());
  if (x.dim(0) == 0) return;
  softmax_family<<<static_cast<unsigned>(x.dim(0)), kRowThreads, 0, stream()>>>(x.data<float>(), out.data<float>(), x.dim(1), 2);
  check_launch("entropy_rows");
}

void topk_rows(const Tensor& x, int k, Tensor& vals, Tensor& ids) {
  check_logits("topk_rows", x);
  require_device("topk_rows", "vals", vals);
  require_device("topk_rows", "ids", ids, core::DType::I32);
  OPD_CHECK(k >= 1 && k <= x.dim(1) && k <= kMaxK, "topk_rows: k = ", k, " must be in [1, min(V, ",
            kMaxK, ")] on CUDA");
  OPD_CHECK(vals.shape() == core::Shape({x.dim(0), k}) && ids.shape() == vals.shape(),
            "topk_rows: vals ", vals.describe(), " ids ", ids.describe());
  if (x.dim(0) == 0) return;
  topk<<<static_cast<unsigned>(x.dim(0)), kTopkThreads, 0, stream()>>>(x.data<float>(), x.dim(1), k,
                                                         vals.data<float>(), ids.data<int32_t>());
  check_launch("topk_rows");
}

void scatter_rows(const Tensor& src, const Tensor& pos, Tensor& dst) {
  require_device("scatter_rows", "src", src);
  require_device("scatter_rows", "pos", pos, core::DType::I32);
  require_device("scatter_rows", "dst", dst);
  OPD_CHECK(src.ndim() == 3 && dst.ndim() == 3 && pos.ndim() == 2 && dst.dim(0) == src.dim(0) &&
                dst.dim(2) == src.dim(2) && pos.dim(0) == src.dim(0) && pos.dim(1) == src.dim(1),
            "scatter_rows: src ", src.describe(), " pos ", pos.describe(), " dst ", dst.describe());
  const int64_t n = src.numel();
  if (n == 0) return;
  scatter<<<blocks_for(n), kThreads, 0, stream()>>>(src.data<float>(), pos.data<int32_t>(), dst.data<float>(),
                                      src.dim(0), src.dim(1), dst.dim(1), src.dim(2));
  check_launch("scatter_rows");
}

void gather_cols(const Tensor& x, const Tensor& ids, Tensor& out) {
  check_logits("gather_cols", x);
  require_device("gather_cols", "ids", ids, core::DType::I32);
  require_device("gather_cols", "out", out);
  OPD_CHECK(ids.ndim() == 2 && ids.dim(0) == x.dim(0) && out.shape() == ids.shape(),
            "gather_cols: ids ", ids.describe(), " out ", out.describe());
  if (ids.numel() == 0) return;
  gather<<<blocks_for(ids.numel()), kThreads, 0, stream()>>>(x.data<float>(), ids.data<int32_t>(),
                                               out.data<float>(), x.dim(0), x.dim(1), ids.dim(1));
  check_launch("gather_cols");
}

}  // namespace opd::backend::cuda
