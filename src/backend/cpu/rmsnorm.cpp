// CPU RMSNorm: row-wise forward (keeping 1/rms) and backward (dx overwrite, dw accumulate).
#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backend/cpu/cpu_ops.hpp"
#include "backend/cpu/kernel_support.hpp"
#include "core/error.hpp"

namespace opd::backend::cpu {

namespace {

using core::DType;


// x viewed as [N, D] with D = w's length; returns N.
int64_t rows_of(const char* op, const Tensor& x, const Tensor& w) {
  require_f32(op, "x", x);
  require_f32(op, "w", w);
  OPD_CHECK(w.ndim() == 1 && x.ndim() >= 1 && x.dim(-1) == w.numel() && w.numel() > 0, op,
            ": weight ", w.describe(), " does not match the last dimension of x ", x.describe());
  return x.numel() / w.numel();
}

void require_like(const char* op, const char* name, const Tensor& t, const Tensor& x) {
  require_f32(op, name, t);
  OPD_CHECK(t.numel() == x.numel() && t.dim(-1) == x.dim(-1), op, ": ", name, " ", t.describe(),
            " does not match x ", x.describe());
}

void require_rstd(const char* op, const Tensor& rstd, int64_t n) {
  require_f32(op, "rstd", rstd);
  OPD_CHECK(rstd.numel() == n, op, ": rstd ", rstd.describe(), " must hold one value per row (", n,
            ")");
}

}  // namespace

void rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, Tensor& y, Tensor* rstd) {
  const int64_t n = rows_of("rmsnorm_forward", x, w);
  const int64_t d = w.numel();
  const Output py("rmsnorm_forward", "y", y);
  OPD_CHECK(y.numel() == x.numel() && y.dim(-1) == x.dim(-1), "rmsnorm_forward: y ",
            y.describe(), " does not match x ", x.describe());
  if (rstd) require_rstd("rmsnorm_forward", *rstd, n);
  const float* px = x.data<float>();
  const float* pw = w.data<float>();
  float* pr = rstd ? rstd->data<float>() : nullptr;
  Kokkos::parallel_for("opd::rmsnorm_forward", Policy(0, n), [=](int64_t r) {
    const float* xr = px + r * d;
    double a[4] = {};
    int64_t j = 0;
    for (; j + 4 <= d; j += 4)
      for (int u = 0; u < 4; ++u) a[u] += static_cast<double>(xr[j + u]) * xr[j + u];
    for (; j < d; ++j) a[0] += static_cast<double>(xr[j]) * xr[j];
    const double ms = ((a[0] + a[1]) + (a[2] + a[3])) / static_cast<double>(d);
    const float inv = static_cast<float>(1.0 / std::sqrt(ms + static_cast<double>(eps)));
    for (int64_t k = 0; k < d; ++k) py.set(r * d + k, xr[k] * inv * pw[k]);
    if (pr) pr[r] = inv;
  });
}

// y = x r w with r = (mean(x^2) + eps)^(-1/2), so
//   dx_i = r (w_i dy_i - x_i r^2 (sum_j dy_j w_j x_j) / D),   dw_j += sum_rows dy_j x_j r.
void rmsnorm_backward(const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dy,
                      Tensor& dx, Tensor& dw) {
  const int64_t n = rows_of("rmsnorm_backward", x, w);
  const int64_t d = w.numel();
  require_rstd("rmsnorm_backward", rstd, n);
  require_like("rmsnorm_backward", "dy", dy, x);
  require_like("rmsnorm_backward", "dx", dx, x);
  require_f32("rmsnorm_backward", "dw", dw);
  OPD_CHECK(dw.numel() == d, "rmsnorm_backward: dw ", dw.describe(), " does not match w ",
            w.describe());
  const float* px = x.data<float>();
  const float* pw = w.data<float>();
  const float* pr = rstd.data<float>();
  const float* pdy = dy.data<float>();
  float* pdx = dx.data<float>();
  float* pdw = dw.data<float>();
  // dw first: dx may alias dy (in-place backward), which the dx loop would overwrite.
  accumulate_column_sums("opd::rmsnorm_backward_dw", n, d, pdw, [=](int64_t r, int64_t j) {
    return static_cast<double>(pdy[r * d + j] * px[r * d + j] * pr[r]);
  });
  Kokkos::parallel_for("opd::rmsnorm_backward_dx", Policy(0, n), [=](int64_t r) {
    const float* xr = px + r * d;
    const float* gr = pdy + r * d;
    float* dxr = pdx + r * d;
    const float inv = pr[r];
    double a[4] = {};
    int64_t j = 0;
    for (; j + 4 <= d; j += 4)
      for (int u = 0; u < 4; ++u) a[u] += static_cast<double>(gr[j + u] * pw[j + u]) * xr[j + u];
    for (; j < d; ++j) a[0] += static_cast<double>(gr[j] * pw[j]) * xr[j];
    const double dot = (a[0] + a[1]) + (a[2] + a[3]);
    const float c = static_cast<float>(dot * inv * inv / static_cast<double>(d));
    for (int64_t k = 0; k < d; ++k) dxr[k] = inv * (pw[k] * gr[k] - xr[k] * c);
  });
}

}  // namespace opd::backend::cpu
