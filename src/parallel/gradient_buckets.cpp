#include "parallel/gradient_buckets.hpp"

#include <algorithm>
#include <cstring>

#include "backend/ops.hpp"
#include "comm/device_group.hpp"
#include "core/error.hpp"

namespace opd::parallel {

GradientBuckets::GradientBuckets(std::vector<core::Tensor*> grads, comm::Communicator dp,
                                 int64_t bucket_bytes)
    : grads_(std::move(grads)),
      dp_(std::move(dp)),
      bucket_of_(grads_.size(), -1),
      reported_(grads_.size(), false) {
  for (const core::Tensor* g : grads_)
    OPD_CHECK(g->dtype() == core::DType::F32 && g->device() == grads_.front()->device(),
              "gradient buckets: ", g->describe(), " among ", grads_.front()->describe());
  on_device_ = !grads_.empty() && grads_.front()->device() == core::Device::Cuda;
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
    if (on_device_) {
      start_on_device(b);
      continue;
    }
    b.flat.resize(static_cast<std::size_t>(b.floats));
    int64_t at = 0;
    for (std::size_t k : b.params) {
      std::memcpy(b.flat.data() + at, grads_[k]->data<float>(), grads_[k]->bytes());
      at += grads_[k]->numel();
    }
    dp_.iallreduce_sum(b.flat.data(), b.floats);
  }
  if (!on_device_) dp_.progress();  // lets the reductions already in flight advance
}

void GradientBuckets::start_on_device(Bucket& b) {
  // The copies run on the compute stream after the backward ops that wrote the gradients; the
  // NCCL sum waits for them and then runs on its own stream while the backward goes on.
  if (!b.device_flat.defined())
    b.device_flat = core::Tensor::empty({b.floats}, core::DType::F32, core::Device::Cuda);
  int64_t at = 0;
  for (std::size_t k : b.params) {
    const int64_t n = grads_[k]->numel();
    core::Tensor part = b.device_flat.slice(at, at + n);
    backend::copy(*grads_[k], part);
    at += n;
  }
  dp_.device_group().start_allreduce_sum(b.device_flat);
}

void GradientBuckets::finish() {
  if (dp_.size() > 1) {
    for (Bucket& b : buckets_) b.waiting = 0;
    start_ready_buckets();
    if (on_device_)
      dp_.device_group().wait();
    else
      dp_.wait_reductions();
    for (Bucket& b : buckets_) {
      int64_t at = 0;
      for (std::size_t k : b.params) {
        const int64_t n = grads_[k]->numel();
        if (on_device_)
          backend::copy(b.device_flat.slice(at, at + n), *grads_[k]);
        else
          std::memcpy(grads_[k]->data<float>(), b.flat.data() + at, grads_[k]->bytes());
        at += n;
      }
    }
  }
  for (Bucket& b : buckets_) b.waiting = static_cast<int>(b.params.size());
  reported_.assign(reported_.size(), false);
  started_ = 0;
}

}  // namespace opd::parallel
