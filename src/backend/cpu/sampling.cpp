// CPU sampling: one token per row of logits [B, V] (backend/ops.hpp, sample_rows).
//
// Only the allowed ids [0, vocab_limit) of a row are candidates: every step below runs on that
// prefix of the row, which is the same as treating the logits past it as -inf.
// Order: every step works in the descending order of the logits, ties broken by the lower id
// (probabilities are monotone in the logits, so this is the descending-probability order).
//   temperature <= 0: argmax, logprob 0.
//   else: p = softmax(x / T); keep the top_k best (top_k <= 0 or >= V: all), renormalised; keep
//   the smallest prefix whose cumulative mass reaches top_p (always >= 1 token; top_p >= 1: all),
//   renormalised; choose the first token whose inclusive cumulative mass exceeds u[b] (inverse
//   CDF); logprob = log of its probability in that final distribution.
//
// No full sort: top-k is a selection (nth_element), and both the top-p cut and the inverse CDF
// find their crossing point by bisecting with nth_element and summing the mass of the upper
// half (expected O(V)); only the last few candidates (<= kSortBelow) are sorted and scanned.
// Everything is a deterministic function of the row and u[b]; rows do not interact.
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

constexpr std::size_t kSortBelow = 64;

// "a comes before b": larger logit first, ties by lower id; NaN ranks as -inf (keeps the
// comparator a strict weak ordering whatever the input).
struct Before {
  const float* x;
  static float key(float v) { return v != v ? -std::numeric_limits<float>::infinity() : v; }
  bool operator()(int32_t a, int32_t b) const {
    const float ka = key(x[a]), kb = key(x[b]);
    return ka > kb || (ka == kb && a < b);
  }
};

// Over the candidates idx[0, n) (any order) with weights w[id], finds the first position i of the
// "before" order at which the inclusive cumulative weight crosses `target` (> target, or
// >= target when `inclusive`). Rearranges idx so that idx[0, i] are exactly the first i + 1
// candidates of the order, with idx[i] the crossing one, and returns i; `mass` receives the
// cumulative weight through i. If rounding leaves no crossing, returns the last position.
std::size_t find_crossing(int32_t* idx, std::size_t n, const double* w, const Before& before,
                          double target, bool inclusive, double& mass) {
  auto crosses = [&](double c) { return inclusive ? c >= target : c > target; };
  std::size_t lo = 0, hi = n;  // the crossing lies in [lo, hi); acc = weight of idx[0, lo)
  double acc = 0.0;
  while (hi - lo > kSortBelow) {
    const std::size_t mid = lo + (hi - lo) / 2;
    std::nth_element(idx + lo, idx + mid, idx + hi, before);  // idx[lo, mid) precede the rest
    double m = 0.0;
    for (std::size_t i = lo; i < mid; ++i) m += w[idx[i]];
    if (crosses(acc + m)) {
      hi = mid;
    } else {
      acc += m;
      lo = mid;
    }
  }
  std::sort(idx + lo, idx + hi, before);
  for (std::size_t i = lo; i < hi; ++i) {
    acc += w[idx[i]];
    if (crosses(acc)) {
      mass = acc;
      return i;
    }
  }
  mass = acc;
  return hi - 1;
}

struct Choice {
  int32_t id;
  float logprob;
};

Choice sample_row(const float* x, int64_t V, float temperature, int top_k, float top_p, double u) {
  const Before before{x};
  if (temperature <= 0.0f) {
    int32_t best = 0;
    for (int32_t j = 1; j < V; ++j)
      if (before(j, best)) best = j;
    return {best, 0.0f};
  }
  thread_local std::vector<int32_t> idx_buf;
  thread_local std::vector<double> w_buf;
  if (static_cast<int64_t>(idx_buf.size()) < V) {
    idx_buf.resize(static_cast<std::size_t>(V));
    w_buf.resize(static_cast<std::size_t>(V));
  }
  int32_t* idx = idx_buf.data();
  double* w = w_buf.data();  // indexed by token id
  for (int32_t j = 0; j < V; ++j) idx[j] = j;

  std::size_t n = static_cast<std::size_t>(V);
  if (top_k > 0 && top_k < V) {
    std::nth_element(idx, idx + top_k, idx + V, before);  // idx[0, top_k): the top_k best
    n = static_cast<std::size_t>(top_k);
  }
  int32_t best = idx[0];
  for (std::size_t i = 1; i < n; ++i)
    if (before(idx[i], best)) best = idx[i];
  const float x_max = x[best];
  if (!std::isfinite(x_max)) return {best, 0.0f};  // no finite distribution: fall back to argmax

  const double inv_t = 1.0 / static_cast<double>(temperature);
  double z = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const int32_t id = idx[i];
    const double e = std::exp((static_cast<double>(Before::key(x[id])) - x_max) * inv_t);
    w[id] = e;
    z += e;
  }
  if (top_p < 1.0f) {  // nucleus: the smallest prefix with mass >= top_p (at least one token)
    double mass = 0.0;
    n = find_crossing(idx, n, w, before, static_cast<double>(top_p) * z, true, mass) + 1;
    z = mass;
  }
  double unused = 0.0;
  const std::size_t pos = find_crossing(idx, n, w, before, u * z, false, unused);
  const int32_t id = idx[pos];
  const double logprob = (static_cast<double>(x[id]) - x_max) * inv_t - std::log(z);
  return {id, static_cast<float>(logprob)};
}

void check_tensor(const char* name, const Tensor& t, const core::Shape& shape, DType dtype) {
  OPD_CHECK(t.defined() && t.is_host(), "sample_rows: ", name, " must be a defined host tensor");
  OPD_CHECK(t.dtype() == dtype && t.shape() == shape, "sample_rows: ", name, " must be ",
            core::dtype_name(dtype), core::shape_str(shape), ", got ", t.describe());
}

}  // namespace

void sample_rows(const Tensor& logits, float temperature, int top_k, float top_p,
                 const Tensor& uniforms, Tensor& ids, Tensor& logprobs, int64_t vocab_limit) {
  OPD_CHECK(
      logits.defined() && logits.is_host() && logits.dtype() == DType::F32 && logits.ndim() == 2,
      "sample_rows: logits must be a host f32 [B, V] tensor, got ", logits.describe());
  const int64_t B = logits.dim(0), V = logits.dim(1);
  OPD_CHECK(V >= 1 && V <= std::numeric_limits<int32_t>::max(), "sample_rows: vocabulary ", V,
            " out of range");
  OPD_CHECK(vocab_limit >= 0 && vocab_limit <= V, "sample_rows: vocab_limit ", vocab_limit,
            " must be in [1, V = ", V, "] (0: all)");
  OPD_CHECK(!std::isnan(temperature), "sample_rows: temperature is NaN");
  OPD_CHECK(!std::isnan(top_p), "sample_rows: top_p is NaN");
  check_tensor("uniforms", uniforms, {B}, DType::F32);
  check_tensor("ids", ids, {B}, DType::I32);
  check_tensor("logprobs", logprobs, {B}, DType::F32);
  const float* up = uniforms.data<float>();
  for (int64_t b = 0; b < B; ++b)
    OPD_CHECK(up[b] >= 0.0f && up[b] < 1.0f, "sample_rows: uniforms[", b, "] = ", up[b],
              " is not in [0, 1)");

  const int64_t allowed = vocab_limit == 0 ? V : vocab_limit;
  const float* xp = logits.data<float>();
  int32_t* ip = ids.data<int32_t>();
  float* lp = logprobs.data<float>();
  Kokkos::parallel_for("opd::cpu::sample_rows", Policy(0, B), [=](int64_t b) {
    const Choice c = sample_row(xp + b * V, allowed, temperature, top_k, top_p, up[b]);
    ip[b] = c.id;
    lp[b] = c.logprob;
  });
}

}  // namespace opd::backend::cpu
