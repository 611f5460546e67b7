// ParamSet: a model's named parameters (Hugging Face Llama/Qwen names), each with its gradient.
// Order is fixed at construction, so optimizer state, checkpoints and the gradient norm all walk
// parameters in the same order.
#pragma once

#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace opd::model {

struct Param {
  std::string name;     // e.g. "model.layers.0.self_attn.q_proj.weight"
  core::Tensor value;
  core::Tensor grad;    // same shape; accumulated by backward, zeroed by zero_grad()
  bool decay = true;    // weight decay applies (matrices) or not (norm gains, biases)
};

class ParamSet {
 public:
  // Adds a parameter; returns its index. Tensors are allocated here.
  std::size_t add(const std::string& name, const core::Shape& shape, bool decay);
  Param& operator[](std::size_t i) { return params_[i]; }
  const Param& operator[](std::size_t i) const { return params_[i]; }
  Param& get(const std::string& name);
  const Param& get(const std::string& name) const;
  bool contains(const std::string& name) const;
  std::size_t size() const { return params_.size(); }
  std::vector<Param>& all() { return params_; }
  const std::vector<Param>& all() const { return params_; }
  int64_t numel() const;
  std::vector<core::Tensor*> grads();  // every gradient, in parameter order
  void zero_grad();

 private:
  std::vector<Param> params_;
};

}  // namespace opd::model
