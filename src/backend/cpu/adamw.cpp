// CPU AdamW step: moment updates with bias correction and decoupled weight decay.
#include <Kokkos_Core.hpp>
#include <cmath>
#include <cstdint>

#include "backend/cpu/cpu_ops.hpp"
#include "backend/cpu/kernel_support.hpp"
#include "core/error.hpp"

namespace opd::backend::cpu {

namespace {

using core::DType;

void require_like(const char* name, const Tensor& t, const Tensor& param) {
  OPD_CHECK(t.dtype() == DType::F32 && t.is_host(), "adamw_step: ", name,
            " must be a host f32 tensor, got ", t.describe());
  OPD_CHECK(t.numel() == param.numel(), "adamw_step: ", name, " ", t.describe(),
            " does not match the parameter ", param.describe());
}

}  // namespace

// g = grad_scale grad; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= lr (wd p + mhat / (sqrt(vhat) + eps)), mhat = m / (1 - b1^t), vhat = v / (1 - b2^t).
void adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWParams& hp) {
  require_like("param", param, param);
  require_like("grad", grad, param);
  require_like("m", m, param);
  require_like("v", v, param);
  OPD_CHECK(hp.step >= 1, "adamw_step: step is 1-based, got ", hp.step);
  const double t = static_cast<double>(hp.step);
  const float c1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(hp.beta1), t)));
  const float c2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(hp.beta2), t)));
  const float b1 = hp.beta1, b2 = hp.beta2, lr = hp.lr, eps = hp.eps, wd = hp.weight_decay;
  const float gs = hp.grad_scale;
  float* pp = param.data<float>();
  const float* pg = grad.data<float>();
  float* pm = m.data<float>();
  float* pv = v.data<float>();
  Kokkos::parallel_for("opd::adamw_step", Policy(0, param.numel()), [=](int64_t i) {
    const float g = pg[i] * gs;
    const float mi = b1 * pm[i] + (1.0f - b1) * g;
    const float vi = b2 * pv[i] + (1.0f - b2) * g * g;
    pm[i] = mi;
    pv[i] = vi;
    const float p = pp[i];
    pp[i] = p - lr * (wd * p + (mi * c1) / (std::sqrt(vi * c2) + eps));
  });
}

}  // namespace opd::backend::cpu
