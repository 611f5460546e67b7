// CPU rotary position embedding (Hugging Face rotate_half convention): forward and backward.
#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "backend/cpu/cpu_ops.hpp"
#include "backend/cpu/kernel_support.hpp"
#include "core/error.hpp"

namespace opd::backend::cpu {

namespace {

using core::DType;

// Turns every pair (x_i, x_{i+E/2}), i < E/2, of every head of row n by sign * pos[n] * f_i,
// f_i = theta^(-2i/E); angles and their cosines and sines in double, applied in float.
//
// The cosines and sines are tabulated once per call, per distinct position when the positions
// span no more than the rows (training: a batch of sequences repeats 0..T-1), else per row
// (decode: a few scattered positions), so they cost min(span, N) * E/2 evaluations.
void rotate(const char* op, Tensor& x, const Tensor& pos, float theta, double sign) {
  OPD_CHECK(x.dtype() == DType::F32 && x.is_host() && x.ndim() == 3, op,
            ": x must be a host f32 [N, H, E] tensor, got ", x.describe());
  OPD_CHECK(x.dim(2) % 2 == 0, op, ": the head dimension of ", x.describe(), " must be even");
  OPD_CHECK(pos.dtype() == DType::I32 && pos.is_host() && pos.numel() == x.dim(0), op,
            ": pos must be host i32 with one position per row of ", x.describe(), ", got ",
            pos.describe());
  OPD_CHECK(theta > 0.0f, op, ": theta must be positive, got ", theta);
  const int64_t n = x.dim(0), h = x.dim(1), e = x.dim(2), half = e / 2;
  if (n == 0 || half == 0) return;
  const int32_t* pp = pos.data<int32_t>();
  int64_t pmin = pp[0], pmax = pp[0];
  for (int64_t r = 1; r < n; ++r) {
    pmin = std::min<int64_t>(pmin, pp[r]);
    pmax = std::max<int64_t>(pmax, pp[r]);
  }
  const bool by_position = pmax - pmin + 1 <= n;
  const int64_t slots = by_position ? pmax - pmin + 1 : n;

  thread_local std::vector<double> freq_buf;
  thread_local std::vector<float> table_buf;  // [slots, 2, half]: cosines then sines
  freq_buf.resize(static_cast<std::size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    freq_buf[i] = std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / e);
  if (static_cast<int64_t>(table_buf.size()) < slots * 2 * half)
    table_buf.resize(static_cast<std::size_t>(slots * 2 * half));
  const double* freq = freq_buf.data();
  float* table = table_buf.data();
  Kokkos::parallel_for("opd_rope_table", Policy(0, slots), [=](int64_t k) {
    const double p = sign * static_cast<double>(by_position ? pmin + k : pp[k]);
    float* c = table + k * 2 * half;
    for (int64_t i = 0; i < half; ++i) {
      const double a = p * freq[i];
      c[i] = static_cast<float>(std::cos(a));
      c[half + i] = static_cast<float>(std::sin(a));
    }
  });
  float* px = x.data<float>();
  Kokkos::parallel_for("opd_rope_apply", Policy(0, n), [=](int64_t r) {
    const float* c = table + (by_position ? pp[r] - pmin : r) * 2 * half;
    const float* s = c + half;
    float* row = px + r * h * e;
    for (int64_t k = 0; k < h; ++k) {
      float* x1 = row + k * e;
      float* x2 = x1 + half;
      for (int64_t i = 0; i < half; ++i) {
        const float a = x1[i], b = x2[i];
        x1[i] = a * c[i] - b * s[i];
        x2[i] = b * c[i] + a * s[i];
      }
    }
  });
}

}  // namespace

void rope_forward(Tensor& x, const Tensor& pos, float theta) {
  rotate("rope_forward", x, pos, theta, 1.0);
}

void rope_backward(Tensor& dx, const Tensor& pos, float theta) {
  rotate("rope_backward", dx, pos, theta, -1.0);
}

}  // namespace opd::backend::cpu
