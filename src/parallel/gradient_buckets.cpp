#include "parallel/gradient_buckets.hpp"

#include <algorithm>
#include <cstring>

#include "core/error.hpp"

namespace opd::parallel {

GradientBuckets::GradientBuckets(std::vector<core::Tensor*> grads, comm::Communicator dp,
                                 int64_t bucket_bytes)
    : grads_(std::move(grads)),
      dp_(std::move(dp)),
      bucket_of_(grads_.size(), -1),
      reported_(grads_.size(), false) {
  const int64_t limit = std::max<int64_t>(1, bucket_bytes / int64_t(sizeof(float)));
  for (std::size_t k = grads_.size(); k-- > 0;) {  // last parameter first
    if (buckets_.empty() || buckets_.back().floats >= limit) buckets_.emplace_back();
    Bucket& b = buckets_.back();
    b.params.push_back(k);
    b.floats += grads_[k]->numel();
    bucket_of_[k] = static_cast<int>(buckets_.size()) - 1;
  }
  for (Bucket& b : buckets_) b.waiting = static_cast<int>(b.params.size());
}

void GradientBuckets::ready(std::size_t i) {
  OPD_CHECK(i < grads_.size(), "gradient bucket: parameter ", i, " of ", grads_.size());
  if (dp_.size() == 1 || reported_[i]) return;
  reported_[i] = true;
  --buckets_[static_cast<std::size_t>(bucket_of_[i])].waiting;
  start_ready_buckets();
}

void GradientBuckets::start_ready_buckets() {
  while (started_ < buckets() && buckets_[static_cast<std::size_t>(started_)].waiting == 0) {
    Bucket& b = buckets_[static_cast<std::size_t>(started_++)];
    b.flat.resize(static_cast<std::size_t>(b.floats));
    int64_t at = 0;
    for (std::size_t k : b.params) {
      std::memcpy(b.flat.data() + at, grads_[k]->data<float>(), grads_[k]->bytes());
      at += grads_[k]->numel();
    }
    dp_.iallreduce_sum(b.flat.data(), b.floats);
  }
  dp_.progress();  // lets the reductions already in flight advance
}

void GradientBuckets::finish() {
  if (dp_.size() > 1) {
    for (Bucket& b : buckets_) b.waiting = 0;
    start_ready_buckets();
    dp_.wait_reductions();
    for (Bucket& b : buckets_) {
      int64_t at = 0;
      for (std::size_t k : b.params) {
        std::memcpy(grads_[k]->data<float>(), b.flat.data() + at, grads_[k]->bytes());
        at += grads_[k]->numel();
      }
    }
  }
  for (Bucket& b : buckets_) b.waiting = static_cast<int>(b.params.size());
  reported_.assign(reported_.size(), false);
  started_ = 0;
}

}  // namespace opd::parallel
