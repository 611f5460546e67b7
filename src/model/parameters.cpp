#include "model/parameters.hpp"

#include "backend/ops.hpp"
#include "core/error.hpp"

namespace opd::model {

std::size_t ParamSet::add(const std::string& name, const core::Shape& shape, bool decay) {
  OPD_CHECK(!contains(name), "duplicate parameter ", name);
  Param p;
  p.name = name;
  p.value = core::Tensor::empty(shape);
  p.grad = core::Tensor::empty(shape);
  backend::fill(p.value, 0.0f);
  backend::fill(p.grad, 0.0f);
  p.decay = decay;
  params_.push_back(std::move(p));
  return params_.size() - 1;
}

Param& ParamSet::get(const std::string& name) {
  for (auto& p : params_)
    if (p.name == name) return p;
  internal_error("ParamSet", "no parameter named " + name);
}

const Param& ParamSet::get(const std::string& name) const {
  return const_cast<ParamSet*>(this)->get(name);
}

bool ParamSet::contains(const std::string& name) const {
  for (const auto& p : params_)
    if (p.name == name) return true;
  return false;
}

int64_t ParamSet::numel() const {
  int64_t n = 0;
  for (const auto& p : params_) n += p.value.numel();
  return n;
}

std::vector<core::Tensor*> ParamSet::grads() {
  std::vector<core::Tensor*> out;
  for (auto& p : params_) out.push_back(&p.grad);
  return out;
}

void ParamSet::zero_grad() {
  for (auto& p : params_) backend::fill(p.grad, 0.0f);
}

}  // namespace opd::model
