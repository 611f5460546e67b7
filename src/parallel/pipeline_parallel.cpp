#include "parallel/pipeline_parallel.hpp"

#include <algorithm>

#include "comm/device_group.hpp"
#include "core/error.hpp"

namespace opd::parallel {

namespace {
// One tag per kind of message: MPI keeps the messages of one (source, tag) in order, and every
// stage consumes each kind in the order it was produced.
constexpr int kTagActivation = 101, kTagGradient = 102, kTagFromLast = 103;

// F32 activations and gradients; true for CUDA tensors (they travel through the group's NCCL
// device group, the others through MPI).
bool on_device(const core::Tensor& t, const char* what) {
  OPD_CHECK(t.dtype() == core::DType::F32, "pipeline ", what, ": ", t.describe());
  return t.device() == core::Device::Cuda;
}
}  // namespace

std::pair<int64_t, int64_t> PipelineParallel::layers(int64_t n_layers, int stage) const {
  const int64_t P = size(), base = n_layers / P, extra = n_layers % P;
  const int64_t begin = stage * base + std::min<int64_t>(stage, extra);
  return {begin, begin + base + (stage < extra ? 1 : 0)};
}

void PipelineParallel::send_device(const core::Tensor& x, int peer) const {
  const comm::DeviceGroup& g = group_.device_group();
  g.send(x, peer);
  if (!*paired_) g.start_sends();
}

void PipelineParallel::send_next(const core::Tensor& x) const {
  if (on_device(x, "send"))
    send_device(x, rank() + 1);
  else
    group_.isend(x.raw(), static_cast<int64_t>(x.bytes()), rank() + 1, kTagActivation);
}

void PipelineParallel::recv_prev(core::Tensor& x) const {
  if (on_device(x, "recv"))
    group_.device_group().recv(x, rank() - 1);
  else
    group_.recv(x.raw(), static_cast<int64_t>(x.bytes()), rank() - 1, kTagActivation);
}

void PipelineParallel::send_prev(const core::Tensor& dx) const {
  if (on_device(dx, "send"))
    send_device(dx, rank() - 1);
  else
    group_.isend(dx.raw(), static_cast<int64_t>(dx.bytes()), rank() - 1, kTagGradient);
}

void PipelineParallel::recv_next(core::Tensor& dx) const {
  if (on_device(dx, "recv"))
    group_.device_group().recv(dx, rank() + 1);
  else
    group_.recv(dx.raw(), static_cast<int64_t>(dx.bytes()), rank() + 1, kTagGradient);
}

void PipelineParallel::flush_device_sends() const {
  if (group_.has_device_group()) group_.device_group().flush_sends();
}

void PipelineParallel::send_from_last(const void* data, int64_t bytes) const {
  flush_device_sends();
  for (int s = 0; s + 1 < size(); ++s) group_.isend(data, bytes, s, kTagFromLast);
}

void PipelineParallel::recv_from_last(void* data, int64_t bytes) const {
  flush_device_sends();
  group_.recv(data, bytes, size() - 1, kTagFromLast);
}

void PipelineParallel::broadcast_from_last(void* data, int64_t bytes) const {
  flush_device_sends();
  group_.broadcast(data, bytes, size() - 1);
}

void PipelineParallel::wait_sends() const {
  flush_device_sends();
  group_.wait_sends();
}

void one_forward_one_backward(const PipelineParallel& pp, int n,
                              const std::function<void(int)>& forward,
                              const std::function<void(int)>& backward) {
  // Activations and gradients cross in both directions here: device sends wait for this
  // stage's next receive (PipelineParallel's header says why).
  struct Paired {
    bool& flag;
    bool before;
    explicit Paired(bool& f) : flag(f), before(f) { flag = true; }
    ~Paired() { flag = before; }
  } paired(*pp.paired_);
  const int warmup = std::min(n, pp.size() - pp.rank() - 1);
  for (int i = 0; i < warmup; ++i) forward(i);
  for (int i = 0; i < n - warmup; ++i) {
    forward(i + warmup);
    backward(i);
  }
  for (int i = n - warmup; i < n; ++i) backward(i);
  pp.wait_sends();
}

}  // namespace opd::parallel
