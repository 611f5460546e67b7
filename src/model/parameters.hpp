// ParamSet: a model's named parameters (Hugging Face Llama/Qwen names), each with its gradient.
// Order is fixed at construction, so optimizer state, checkpoints and the gradient norm all walk
// parameters in the same order.
#pragma once

#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "parallel/pipeline_parallel.hpp"
#include "parallel/tensor_parallel.hpp"

namespace opd::model {

struct Param {
  std::string name;     // e.g. "model.layers.0.self_attn.q_proj.weight"
  core::Tensor value;
  core::Tensor grad;    // same shape; accumulated by backward, zeroed by zero_grad()
  // Mixed precision: the bf16 copy of a matrix's value that the GEMMs read (ParamSet::
  // refresh_compute keeps it current); undefined in fp32 and for norm gains and biases.
  core::Tensor compute;
  bool decay = true;    // weight decay applies (matrices) or not (norm gains, biases)
  // Tensor parallelism: `value` is the slice [shard_begin, shard_begin + value.dim(shard_axis))
  // along shard_axis of a parameter of global_shape; shard_axis -1: whole (replicated).
  core::Shape global_shape;
  int64_t spec_index = -1;  // its place in parameter_specs() (the initialisation stream)
  int shard_axis = -1;
  int64_t shard_begin = 0;
  bool sharded() const { return shard_axis >= 0; }
  // The block's offset within the global shape (for checkpoints).
  core::Shape shard_offset() const;
};

class ParamSet {
 public:
  ParamSet() = default;
  // Parameters sharded along an axis are split over the tensor-parallel group; the pipeline
  // group's stages hold disjoint sets of parameters (the gradient norm sums over both).
  ParamSet(parallel::TensorParallel tp, parallel::PipelineParallel pp,
           core::Device device = core::Device::Host)
      : tp_(std::move(tp)), pp_(std::move(pp)), device_(device) {}
  core::Device device() const { return device_; }  // where values and gradients live
  const parallel::TensorParallel& tensor_parallel() const { return tp_; }
  const parallel::PipelineParallel& pipeline() const { return pp_; }

  // Adds a parameter of `global_shape`, this rank's shard of it when shard_axis >= 0 (that
  // dimension must divide by the group size); returns its index. Tensors are allocated here.
  std::size_t add(const std::string& name, const core::Shape& global_shape, bool decay,
                  int shard_axis = -1);
  Param& operator[](std::size_t i) { return params_[i]; }
  const Param& operator[](std::size_t i) const { return params_[i]; }
  Param& get(const std::string& name);
  const Param& get(const std::string& name) const;
  bool contains(const std::string& name) const;
  std::size_t size() const { return params_.size(); }
  std::vector<Param>& all() { return params_; }
  const std::vector<Param>& all() const { return params_; }
  int64_t numel() const;         // this rank's elements
  int64_t global_numel() const;  // the whole model's
  std::vector<core::Tensor*> grads();  // every gradient, in parameter order
  void zero_grad();

  // Mixed precision: with BF16, every matrix also gets a bf16 compute copy; the
  // f32 values stay the master weights the optimizer updates. F32 (the default): none.
  void set_compute_dtype(core::DType dtype);
  core::DType compute_dtype() const { return compute_dtype_; }
  // Whoever writes values (the optimizer, a checkpoint load, initialisation) says so here; the
  // compute copies are stale until refresh_compute() recasts them, which the model does before
  // it reads them.
  void values_changed() { ++generation_; }
  void refresh_compute();

 private:
  parallel::TensorParallel tp_;
  parallel::PipelineParallel pp_;
  core::Device device_ = core::Device::Host;
  std::vector<Param> params_;
  core::DType compute_dtype_ = core::DType::F32;
  uint64_t generation_ = 0, compute_generation_ = 0;
};

// Copies the shard of `p` out of the whole parameter `global` (host F32, of p.global_shape).
void take_shard(const core::Tensor& global, Param& p);

}  // namespace opd::model
