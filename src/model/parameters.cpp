#include "model/parameters.hpp"

#include <algorithm>

#include "backend/ops.hpp"
#include "core/error.hpp"

namespace opd::model {

core::Shape Param::shard_offset() const {
  core::Shape off(global_shape.size(), 0);
  if (sharded()) off[static_cast<std::size_t>(shard_axis)] = shard_begin;
  return off;
}

std::size_t ParamSet::add(const std::string& name, const core::Shape& global_shape, bool decay,
                          int shard_axis) {
  OPD_CHECK(!contains(name), "duplicate parameter ", name);
  Param p;
  p.name = name;
  p.global_shape = global_shape;
  core::Shape shape = global_shape;
  if (shard_axis >= 0 && tp_.size() > 1) {
    const auto ax = static_cast<std::size_t>(shard_axis);
    OPD_CHECK(ax < shape.size() && shape[ax] % tp_.size() == 0, "parameter ", name,
              ": dimension ", shard_axis, " does not divide by tp = ", tp_.size());
    shape[ax] = tp_.shard_count(global_shape[ax]);
    p.shard_axis = shard_axis;
    p.shard_begin = tp_.shard_begin(global_shape[ax]);
  }
  p.value = core::Tensor::empty(shape, core::DType::F32, device_);
  p.grad = core::Tensor::empty(shape, core::DType::F32, device_);
  backend::fill(p.value, 0.0f);
  backend::fill(p.grad, 0.0f);
  p.decay = decay;
  params_.push_back(std::move(p));
  return params_.size() - 1;
}

void ParamSet::set_compute_dtype(core::DType dtype) {
  OPD_CHECK(dtype == core::DType::F32 || dtype == core::DType::BF16,
            "compute dtype must be f32 or bf16, got ", core::dtype_name(dtype));
  compute_dtype_ = dtype;
  for (auto& p : params_)
    p.compute = dtype == core::DType::BF16 && p.value.ndim() == 2
                    ? core::Tensor::empty(p.value.shape(), core::DType::BF16, device_)
                    : core::Tensor();
  values_changed();
}

void ParamSet::refresh_compute() {
  if (compute_dtype_ == core::DType::F32 || compute_generation_ == generation_) return;
  for (auto& p : params_)
    if (p.compute.defined()) backend::cast(p.value, p.compute);
  compute_generation_ = generation_;
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

int64_t ParamSet::global_numel() const {
  int64_t n = 0;
  for (const auto& p : params_) n += core::shape_numel(p.global_shape);
  return n;
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

void take_shard(const core::Tensor& global, Param& p) {
  OPD_CHECK(global.shape() == p.global_shape, "take_shard: ", global.describe(), " for ", p.name);
  if (!p.sharded()) {
    backend::copy(global, p.value);
    return;
  }
  // Rows of the slice: `outer` blocks of `inner` contiguous floats, taken at an offset.
  const auto ax = static_cast<std::size_t>(p.shard_axis);
  int64_t outer = 1, inner = 1;
  for (std::size_t i = 0; i < ax; ++i) outer *= p.global_shape[i];
  for (std::size_t i = ax + 1; i < p.global_shape.size(); ++i) inner *= p.global_shape[i];
  const int64_t g = p.global_shape[ax], l = p.value.dim(static_cast<int>(ax));
  // The slice is cut in host memory (global is a host tensor) and then moved where the value lives.
  core::Tensor shard = p.value.is_host() ? p.value : core::Tensor::empty(p.value.shape());
  const float* src = global.data<float>();
  float* dst = shard.data<float>();
  for (int64_t o = 0; o < outer; ++o)
    std::copy(src + (o * g + p.shard_begin) * inner, src + (o * g + p.shard_begin + l) * inner,
              dst + o * l * inner);
  if (!p.value.is_host()) backend::copy(shard, p.value);
}

}  // namespace opd::model
