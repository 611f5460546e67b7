#include "model/optimizer.hpp"

#include <algorithm>
#include <cmath>

#include "backend/ops.hpp"
#include "core/error.hpp"

namespace opd::model {

namespace ops = opd::backend;

double scheduled_lr(const OptimConfig& cfg, int64_t step, int64_t total) {
  if (cfg.warmup > 0 && step < cfg.warmup)
    return cfg.lr * static_cast<double>(step + 1) / static_cast<double>(cfg.warmup);
  const double floor = cfg.lr * cfg.min_lr_ratio;
  const int64_t span = std::max<int64_t>(1, total - cfg.warmup);
  const double frac =
      std::clamp(static_cast<double>(step - cfg.warmup) / static_cast<double>(span), 0.0, 1.0);
  if (cfg.schedule == "linear") return floor + (cfg.lr - floor) * (1.0 - frac);
  if (cfg.schedule == "cosine") return floor + (cfg.lr - floor) * 0.5 * (1.0 + std::cos(M_PI * frac));
  return cfg.lr;
}

AdamW::AdamW(const ParamSet& params, const std::vector<bool>* owned) {
  OPD_CHECK(!owned || owned->size() == params.size(), "one ownership flag per parameter");
  for (std::size_t i = 0; i < params.size(); ++i) {
    const bool mine = !owned || (*owned)[i];
    for (auto* moments : {&m_, &v_}) {
      core::Tensor t;
      if (mine) {
        t = core::Tensor::empty(params[i].value.shape(), core::DType::F32, params.device());
        ops::fill(t, 0.0f);
      }
      moments->push_back(t);
    }
  }
}

double grad_norm(const ParamSet& params) {
  // Shards are summed over the tensor-parallel group; replicated parameters (identical on every
  // rank of the group) count once; the pipeline stages' parameters are disjoint and all count.
  double s[2] = {0.0, 0.0};  // sharded, replicated
  for (const auto& p : params.all()) s[p.sharded() ? 0 : 1] += ops::sum_squares(p.grad);
  params.tensor_parallel().group().allreduce_sum(s, 1);
  double total = s[0] + s[1];
  params.pipeline().group().allreduce_sum(&total, 1);
  return std::sqrt(total);
}

double AdamW::step(ParamSet& params, const OptimConfig& cfg, double lr) {
  OPD_CHECK(params.size() == m_.size(), "optimizer state does not match the parameters");
  const double norm = grad_norm(params);
  float grad_scale = 1.0f;
  if (cfg.grad_clip > 0 && norm > cfg.grad_clip) grad_scale = static_cast<float>(cfg.grad_clip / norm);
  ++steps_;
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (!owns(i)) continue;
    Param& p = params[i];
    ops::AdamWParams hp;
    hp.lr = static_cast<float>(lr);
    hp.beta1 = static_cast<float>(cfg.beta1);
    hp.beta2 = static_cast<float>(cfg.beta2);
    hp.eps = static_cast<float>(cfg.eps);
    hp.weight_decay = p.decay ? static_cast<float>(cfg.weight_decay) : 0.0f;
    hp.step = steps_;
    hp.grad_scale = grad_scale;
    ops::adamw_step(p.value, p.grad, m_[i], v_[i], hp);
  }
  params.values_changed();
  return norm;
}

}  // namespace opd::model
