// CUDA fused AdamW step (decoupled weight decay), the CPU reference's arithmetic per element.
#include <cmath>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_ops.hpp"

namespace opd::backend::cuda {

namespace {
__global__ void adamw(float* p, const float* grad, float* m, float* v, int64_t n, float lr,
                      float b1, float b2, float eps, float wd, float gs, float c1, float c2) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = grad[i] * gs;
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float x = p[i];
    p[i] = x - lr * (wd * x + (mi * c1) / (sqrtf(vi * c2) + eps));
  }
}
}  // namespace

void adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWParams& hp) {
  for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"param", &param},
                                {"grad", &grad}, {"m", &m}, {"v", &v}})
    require_device("adamw_step", name, *t);
  OPD_CHECK(grad.numel() == param.numel() && m.numel() == param.numel() && v.numel() == param.numel(),
            "adamw_step: sizes differ");
  OPD_CHECK(hp.step >= 1, "adamw_step: step is 1-based, got ", hp.step);
  const double t = static_cast<double>(hp.step);
  const float c1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(hp.beta1), t)));
  const float c2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(hp.beta2), t)));
  adamw<<<blocks_for(param.numel()), kThreads, 0, stream()>>>(param.data<float>(), grad.data<float>(),
                                                m.data<float>(), v.data<float>(), param.numel(),
                                                hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay,
                                                hp.grad_scale, c1, c2);
  check_launch("adamw_step");
}

}  // namespace opd::backend::cuda
