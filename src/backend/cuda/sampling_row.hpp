// sample_rows for the CUDA backend (backend/ops.hpp), one block per row: the checks and
// parameter block (host) and the row's code (device, or the host emulation test).
//
// The same choice as the CPU backend (backend/cpu/sampling.cpp) for the same uniforms: greedy is
// the first key; otherwise the top-k cut is the k-th key, the weights exp((x - x_max) / T) are
// summed over the candidates in double, and the top-p cut and the inverse CDF are crossings of
// the cumulative weight in the top-k order (row_select.hpp). Sums run in another order than the
// CPU's, so only a uniform within rounding of a cumulative-mass boundary can choose otherwise.
// Like the CPU, every step sees only the row's allowed prefix [0, allowed) (vocab_limit).
#pragma once

#include <limits>

#include "backend/cuda/row_select.hpp"
#include "backend/cuda/staging.hpp"
#include "backend/ops.hpp"

namespace opd::backend::cuda::rows {

struct SampleParams {
  const float* x = nullptr;  // [B, V]
  const float* u = nullptr;  // [B]
  int32_t* ids = nullptr;
  float* logprobs = nullptr;
  int64_t V = 0;        // the row stride
  int64_t allowed = 0;  // the candidates: columns [0, allowed), 1 <= allowed <= V
  float temperature = 0.0f, top_p = 1.0f;
  int top_k = 0;
};

// exp((x - x_max) / T) at the ranking value (NaN as -inf), as the CPU backend forms it.
struct SoftmaxWeight {
  float x_max;
  double inv_t;
  OPD_ROW double operator()(int64_t, float v) const {
    return exp((double(rank_value(v)) - double(x_max)) * inv_t);
  }
};

template <class Blk>
OPD_ROW void sample_row(Blk& b, const SampleParams& P, int64_t r) {
  const float* x = P.x + r * P.V;
  const int64_t V = P.allowed;  // from here on the row is its allowed prefix
  const int32_t best = key_id(first_key(b, x, V));  // always among the top-k candidates
  if (P.temperature <= 0.0f || !is_finite(double(x[best]))) {
    // Greedy, or no finite distribution (the CPU's argmax fallback).
    if (b.tid() == 0) {
      P.ids[r] = best;
      P.logprobs[r] = 0.0f;
    }
    return;
  }
  uint64_t floor = 0;
  if (P.top_k > 0 && P.top_k < V) floor = kth_key(b, x, V, P.top_k);
  const float x_max = x[best];
  const double inv_t = 1.0 / double(P.temperature);
  const SoftmaxWeight weight{x_max, inv_t};
  double z = 0.0;
  for (int64_t j = b.tid(); j < V; j += b.size())
    if (order_key(x[j], j) >= floor) z += weight(j, x[j]);
  z = b.sum(z);
  if (P.top_p < 1.0f) {  // nucleus: the smallest prefix with mass >= top_p (at least one token)
    const Crossing c = find_crossing(b, x, V, floor, weight, double(P.top_p) * z, true);
    floor = c.key;
    z = c.before + c.weight;
  }
  const Crossing c = find_crossing(b, x, V, floor, weight, double(P.u[r]) * z, false);
  if (b.tid() == 0) {
    const int32_t id = key_id(c.key);
    P.ids[r] = id;
    P.logprobs[r] = float((double(x[id]) - double(x_max)) * inv_t - log(z));
  }
}

// The CPU backend's checks; logits, ids and logprobs on the staging device, uniforms anywhere.
inline SampleParams prepare_sample(Staging& st, const Tensor& logits, float temperature, int top_k,
                                   float top_p, const Tensor& uniforms, Tensor& ids,
                                   Tensor& logprobs, int64_t vocab_limit) {
  const core::Device dev = st.device();
  OPD_CHECK(logits.defined() && logits.device() == dev && logits.dtype() == core::DType::F32 &&
                logits.ndim() == 2,
            "sample_rows: logits must be an f32 [B, V] tensor on ", core::device_name(dev),
            ", got ", logits.describe());
  const int64_t B = logits.dim(0), V = logits.dim(1);
  OPD_CHECK(V >= 1 && V <= std::numeric_limits<int32_t>::max(), "sample_rows: vocabulary ", V,
            " out of range");
  OPD_CHECK(vocab_limit >= 0 && vocab_limit <= V, "sample_rows: vocab_limit ", vocab_limit,
            " must be in [1, V = ", V, "] (0: all)");
  OPD_CHECK(!(temperature != temperature), "sample_rows: temperature is NaN");
  OPD_CHECK(!(top_p != top_p), "sample_rows: top_p is NaN");
  auto check = [&](const char* name, const Tensor& t, core::DType dtype, bool on_device) {
    OPD_CHECK(t.defined() && t.dtype() == dtype && t.shape() == core::Shape{B} &&
                  (!on_device || t.device() == dev),
              "sample_rows: ", name, " must be ", core::dtype_name(dtype), "[", B, "]",
              on_device ? " on the logits' device" : "", ", got ", t.describe());
  };
  check("uniforms", uniforms, core::DType::F32, false);
  check("ids", ids, core::DType::I32, true);
  check("logprobs", logprobs, core::DType::F32, true);
  const std::vector<float> u = st.host<float>(uniforms);
  for (int64_t b = 0; b < B; ++b)
    OPD_CHECK(u[b] >= 0.0f && u[b] < 1.0f, "sample_rows: uniforms[", b, "] = ", u[b],
              " is not in [0, 1)");
  SampleParams P;
  P.x = logits.data<float>();
  P.u = st.in<float>(uniforms);
  P.ids = ids.data<int32_t>();
  P.logprobs = logprobs.data<float>();
  P.V = V;
  P.allowed = vocab_limit == 0 ? V : vocab_limit;
  P.temperature = temperature;
  P.top_k = top_k;
  P.top_p = top_p;
  return P;
}

}  // namespace opd::backend::cuda::rows
