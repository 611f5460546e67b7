#include "parallel/gradient_allreduce.hpp"

#include <cstring>

namespace opd::parallel {

void allreduce_sum(const std::vector<core::Tensor*>& grads, const comm::Communicator& dp) {
  if (dp.size() == 1) return;
  int64_t total = 0;
  for (const auto* g : grads) total += g->numel();
  // One bucket: a copy in and out costs far less than a collective per tensor.
  static thread_local std::vector<float> bucket;
  bucket.resize(static_cast<std::size_t>(total));
  int64_t at = 0;
  for (const auto* g : grads) {
    std::memcpy(bucket.data() + at, g->data<float>(), static_cast<std::size_t>(g->numel()) * 4);
    at += g->numel();
  }
  dp.allreduce_sum(bucket.data(), total);
  at = 0;
  for (auto* g : grads) {
    std::memcpy(g->data<float>(), bucket.data() + at, static_cast<std::size_t>(g->numel()) * 4);
    at += g->numel();
  }
}

}  // namespace opd::parallel
