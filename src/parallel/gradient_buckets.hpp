// Data-parallel gradient reduction in buckets (DESIGN.md §6). The parameters are grouped, in
// the reverse of their order (the order the backward pass finishes them), into buckets of about
// `bucket_bytes`; a bucket's all-reduce starts, without waiting for it, as soon as the last
// backward pass of the update has finished all of its parameters, so that the reduction of the
// later layers overlaps the backward of the earlier ones. Buckets start in the same order on
// every rank (a bucket ready early waits for the ones before it): non-blocking collectives must
// be issued in the same order everywhere.
//
// CUDA gradients are summed by the data-parallel group's NCCL device group instead of MPI: a
// bucket is packed on the device and its sum runs on NCCL's stream, overlapping the rest of the
// backward just the same; finish() waits for them. The first device bucket creates the device
// group, collectively over the data-parallel ranks (every rank reaches finish()).
#pragma once

#include <cstdint>
#include <vector>

#include "comm/communicator.hpp"
#include "core/tensor.hpp"

namespace opd::parallel {

class GradientBuckets {
 public:
  // grads: F32 tensors in parameter order, all on the host or all on the CUDA device (they
  // stay owned by the caller).
  GradientBuckets(std::vector<core::Tensor*> grads, comm::Communicator dp,
                  int64_t bucket_bytes = 16 << 20);

  int buckets() const { return static_cast<int>(buckets_.size()); }
  // Parameter `i`'s gradient is final for this update (its last backward contribution is in).
  void ready(std::size_t i);
  // Starts whatever has not started, waits for every reduction and writes the sums back into
  // the gradients. Then the next update begins.
  void finish();

 private:
  struct Bucket {
    std::vector<std::size_t> params;
    int64_t floats = 0;
    int waiting = 0;  // parameters not yet ready this update
    std::vector<float> flat;
    core::Tensor device_flat;  // [floats] on the device, allocated at the first device update
  };
  void start_ready_buckets();
  void start_on_device(Bucket& b);

  std::vector<core::Tensor*> grads_;
  comm::Communicator dp_;
  std::vector<Bucket> buckets_;
  std::vector<int> bucket_of_;   // per parameter
  std::vector<bool> reported_;   // per parameter, this update
  int started_ = 0;              // buckets [0, started_) are in flight
  bool on_device_ = false;       // CUDA gradients: NCCL instead of MPI
};

}  // namespace opd::parallel
