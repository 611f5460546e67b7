// Tensor parallelism (DESIGN.md §6, the Megatron pattern): the ranks of one tensor-parallel group
// each hold a slice of every sharded weight. TensorParallel is one rank's place in that group and
// the few collectives the sharded model needs: the sum of partial results after a row-parallel
// product (attention output, down projection, the input gradients of column-parallel ones), and
// the gathering or slicing of vocabulary columns. Host tensors go through MPI, CUDA tensors
// through the group's NCCL device group (comm/device_group.hpp), created by the first device
// collective; each returns with its result in place either way.
//
// Shards are even: a sharded dimension must divide by the group size (ModelConfig checks the
// model's shapes against tp before anything is built).
#pragma once

#include <cstdint>

#include "comm/communicator.hpp"
#include "core/tensor.hpp"

namespace opd::parallel {

class TensorParallel {
 public:
  TensorParallel() = default;  // one rank: every collective is the identity
  explicit TensorParallel(comm::Communicator group) : group_(std::move(group)) {}

  int rank() const { return group_.rank(); }
  int size() const { return group_.size(); }
  const comm::Communicator& group() const { return group_; }

  // This rank's slice [begin, begin + count) of a dimension of `global` entries.
  int64_t shard_count(int64_t global) const { return global / size(); }
  int64_t shard_begin(int64_t global) const { return shard_count(global) * rank(); }

  // x (F32; also BF16 on a CUDA device) summed over the group, in place.
  void allreduce_sum(core::Tensor& x) const;
  // local [M, C] on every rank -> full [M, C * size] with rank r's columns at [r C, (r + 1) C).
  void gather_columns(const core::Tensor& local, core::Tensor& full) const;
  // full [M, C * size] -> this rank's columns [M, C].
  void take_columns(const core::Tensor& full, core::Tensor& local) const;

 private:
  comm::Communicator group_;
};

}  // namespace opd::parallel
