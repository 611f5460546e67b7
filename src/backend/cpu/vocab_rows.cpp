// CPU row-wise vocabulary ops on materialised logits x [N, V]: log-softmax, log-sum-exp,
// entropy of softmax, and top-k (descending, ties broken by the lower id).
// One Kokkos iteration per row; each iteration touches only its own row, so the bodies are
// race-free under any host execution space. Sums run in double.
#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "backend/cpu/cpu_ops.hpp"
#include "backend/cpu/kernel_support.hpp"
#include "core/error.hpp"

namespace opd::backend::cpu {

namespace {

using core::DType;

void check_logits(const char* op, const Tensor& x) {
  OPD_CHECK(x.defined() && x.is_host(), op, ": logits must be a defined host tensor");
  OPD_CHECK(x.dtype() == DType::F32, op, ": logits must be f32, got ", x.describe());
  OPD_CHECK(x.ndim() == 2, op, ": logits must be [N, V], got ", x.describe());
}

void check_out(const char* op, const char* name, const Tensor& t, const core::Shape& shape,
               DType dtype) {
  OPD_CHECK(t.defined() && t.is_host(), op, ": ", name, " must be a defined host tensor");
  OPD_CHECK(t.dtype() == dtype && t.shape() == shape, op, ": ", name, " must be ",
            core::dtype_name(dtype), core::shape_str(shape), ", got ", t.describe());
}

// Row statistics shared by the three softmax-family ops: max m, s = sum exp(x - m) and
// t = sum exp(x - m) * (x - m), all in double. Entries equal to -inf contribute nothing.
struct RowStats {
  double m, s, t;
};

RowStats row_stats(const float* x, int64_t V, bool want_t) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < V; ++j) m = std::max(m, x[j]);
  RowStats r{static_cast<double>(m), 0.0, 0.0};
  if (!std::isfinite(m)) {  // all -inf (fully masked), +inf or NaN present: no finite shift
    r.s = (m == -std::numeric_limits<float>::infinity()) ? 0.0 : 1.0;
    return r;
  }
  double s = 0.0, t = 0.0;
  for (int64_t j = 0; j < V; ++j) {
    double d = static_cast<double>(x[j]) - r.m;
    double e = std::exp(d);
    s += e;
    if (want_t && e > 0.0) t += e * d;
  }
  r.s = s;
  r.t = t;
  return r;
}

// Strict total order "a comes before b": larger value first, ties by lower id; NaN ranks as -inf
// so that the comparator stays a strict weak ordering whatever the input.
struct Before {
  const float* x;
  static float key(float v) { return v != v ? -std::numeric_limits<float>::infinity() : v; }
  bool operator()(int32_t a, int32_t b) const {
    float ka = key(x[a]), kb = key(x[b]);
    return ka > kb || (ka == kb && a < b);
  }
};

}  // namespace

void log_softmax_rows(const Tensor& x, Tensor& out) {
  check_logits("log_softmax_rows", x);
  check_out("log_softmax_rows", "out", out, x.shape(), DType::F32);
  const int64_t N = x.dim(0), V = x.dim(1);
  const float* xp = x.data<float>();
  float* op = out.data<float>();
  // out may alias x: each row is fully read (row_stats) before it is written.
  Kokkos::parallel_for("opd::cpu::log_softmax_rows", Policy(0, N), [=](int64_t n) {
    const float* xr = xp + n * V;
    float* orow = op + n * V;
    RowStats r = row_stats(xr, V, false);
    double lse = r.m + std::log(r.s);
    for (int64_t j = 0; j < V; ++j) orow[j] = static_cast<float>(static_cast<double>(xr[j]) - lse);
  });
}

void logsumexp_rows(const Tensor& x, Tensor& out) {
  check_logits("logsumexp_rows", x);
  const int64_t N = x.dim(0), V = x.dim(1);
  check_out("logsumexp_rows", "out", out, {N}, DType::F32);
  const float* xp = x.data<float>();
  float* op = out.data<float>();
  Kokkos::parallel_for("opd::cpu::logsumexp_rows", Policy(0, N), [=](int64_t n) {
    RowStats r = row_stats(xp + n * V, V, false);
    op[n] = static_cast<float>(r.m + std::log(r.s));
  });
}

void entropy_rows(const Tensor& x, Tensor& out) {
  check_logits("entropy_rows", x);
  const int64_t N = x.dim(0), V = x.dim(1);
  check_out("entropy_rows", "out", out, {N}, DType::F32);
  const float* xp = x.data<float>();
  float* op = out.data<float>();
  // H = -sum p log p = log s - t / s with p = e / s, log p = (x - m) - log s.
  Kokkos::parallel_for("opd::cpu::entropy_rows", Policy(0, N), [=](int64_t n) {
    RowStats r = row_stats(xp + n * V, V, true);
    op[n] = static_cast<float>(std::log(r.s) - r.t / r.s);
  });
}

void topk_rows(const Tensor& x, int k, Tensor& vals, Tensor& ids) {
  check_logits("topk_rows", x);
  const int64_t N = x.dim(0), V = x.dim(1);
  OPD_CHECK(k >= 1 && k <= V, "topk_rows: k = ", k, " must be in [1, V = ", V, "]");
  check_out("topk_rows", "vals", vals, {N, k}, DType::F32);
  check_out("topk_rows", "ids", ids, {N, k}, DType::I32);
  const float* xp = x.data<float>();
  float* vp = vals.data<float>();
  int32_t* ip = ids.data<int32_t>();
  const int64_t K = k;
  Kokkos::parallel_for("opd::cpu::topk_rows", Policy(0, N), [=](int64_t n) {
    const float* xr = xp + n * V;
    const Before before{xr};
    // A heap of the best K seen so far whose top is the worst of them: O(V log K), K scratch.
    thread_local std::vector<int32_t> heap;
    heap.resize(static_cast<std::size_t>(K));
    for (int64_t j = 0; j < K; ++j) heap[j] = static_cast<int32_t>(j);
    std::make_heap(heap.begin(), heap.end(), before);
    for (int64_t j = K; j < V; ++j) {
      const int32_t id = static_cast<int32_t>(j);
      if (before(id, heap.front())) {
        std::pop_heap(heap.begin(), heap.end(), before);
        heap.back() = id;
        std::push_heap(heap.begin(), heap.end(), before);
      }
    }
    std::sort_heap(heap.begin(), heap.end(), before);  // ascending in "before": best first
    for (int64_t j = 0; j < K; ++j) {
      ip[n * K + j] = heap[j];
      vp[n * K + j] = xr[heap[j]];
    }
  });
}

}  // namespace opd::backend::cpu
