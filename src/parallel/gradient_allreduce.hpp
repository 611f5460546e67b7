// Data-parallel gradient reduction: the gradients of every parameter summed over the
// data-parallel ranks in one bucket (one collective, not one per tensor).
#pragma once

#include <vector>

#include "comm/communicator.hpp"
#include "core/tensor.hpp"

namespace opd::parallel {

// grads: host F32 tensors; summed in place over `dp` (a no-op on one rank).
void allreduce_sum(const std::vector<core::Tensor*>& grads, const comm::Communicator& dp);

}  // namespace opd::parallel
