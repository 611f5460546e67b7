// AdamW with bias correction and decoupled weight decay, global-norm gradient clipping, and the
// learning-rate schedules (constant, linear, cosine; each with linear warm-up).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "model/parameters.hpp"

namespace opd::model {

struct OptimConfig {
  double lr = 1e-3;
  double min_lr_ratio = 0.0;   // the schedule's floor as a fraction of lr
  int64_t warmup = 0;          // steps of linear warm-up from 0
  std::string schedule = "constant";  // constant | linear | cosine
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;   // applied to matrices only (Param::decay)
  double grad_clip = 1.0;      // global L2 norm; <= 0 disables
};

// Learning rate at 0-based step `step` of `total` steps.
double scheduled_lr(const OptimConfig& cfg, int64_t step, int64_t total);

class AdamW {
 public:
  // owned (optional, one flag per parameter): keep moments and take steps for the owned
  // parameters only (ZeRO-1 sharding); the others are left for their owners to update.
  explicit AdamW(const ParamSet& params, const std::vector<bool>* owned = nullptr);
  bool owns(std::size_t i) const { return m_[i].defined(); }
  // Clips the gradients to cfg.grad_clip (global norm), applies one AdamW step at learning rate
  // lr, and returns the pre-clip global gradient norm. steps() counts the steps taken.
  double step(ParamSet& params, const OptimConfig& cfg, double lr);
  int64_t steps() const { return steps_; }
  void set_steps(int64_t n) { steps_ = n; }
  std::vector<core::Tensor>& exp_avg() { return m_; }
  std::vector<core::Tensor>& exp_avg_sq() { return v_; }

 private:
  std::vector<core::Tensor> m_, v_;
  int64_t steps_ = 0;
};

// Global L2 norm of all gradients (double accumulation).
double grad_norm(const ParamSet& params);

}  // namespace opd::model
