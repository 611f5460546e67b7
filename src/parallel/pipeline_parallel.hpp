// Pipeline parallelism (DESIGN.md §6): the layers of a model split over `size` stages, each a
// rank of the pipeline group. Activations travel forward to the next stage and their gradients
// back, point to point; stage 0 holds the embedding, the last stage the final norm and the LM
// head, so the per-token results (logits, losses, sampled tokens) appear on the last stage.
//
// Sends do not wait for the receiver (Communicator::isend copies them), so a stage can go on
// with the next micro-batch while its neighbour computes: that is what makes micro-batched
// prefill and decode, and the 1F1B training schedule, pipelined rather than sequential.
//
// CUDA activations and gradients travel GPU to GPU through the group's NCCL device group
// (comm/device_group.hpp; the first device transfer creates it and is collective over the
// pipeline group, which every stage reaches in its first micro-batch). A device send copies its
// tensor at once, so the caller may reuse it, as with MPI. Where the traffic goes one way
// (forward-only passes: prefill, decode, scoring) it starts at once and the next stage can
// begin. Inside one_forward_one_backward, where activations go forward while gradients come
// back, it waits and goes out together with this stage's next receive (one NCCL group): NCCL
// runs one group's transfers in issue order, so two stages each with a started send to the
// other ahead of their receives would wait for each other forever. Every device send is
// delivered by the next host transfer or wait_sends(). Between two ranks the device messages
// keep their order, as each direction carries one kind (activations forward, gradients back).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

#include "comm/communicator.hpp"
#include "core/tensor.hpp"

namespace opd::parallel {

class PipelineParallel {
 public:
  PipelineParallel() = default;  // one stage: every transfer is a no-op
  explicit PipelineParallel(comm::Communicator group) : group_(std::move(group)) {}

  int rank() const { return group_.rank(); }
  int size() const { return group_.size(); }
  bool first() const { return rank() == 0; }
  bool last() const { return rank() == size() - 1; }
  const comm::Communicator& group() const { return group_; }

  // The layers [begin, end) of stage `stage` when n_layers are split over the stages: as even
  // as possible, the earlier stages taking one more when it does not divide.
  std::pair<int64_t, int64_t> layers(int64_t n_layers, int stage) const;
  std::pair<int64_t, int64_t> my_layers(int64_t n_layers) const { return layers(n_layers, rank()); }

  // Activations [N, D] to the next stage / from the previous; gradients back.
  void send_next(const core::Tensor& x) const;
  void recv_prev(core::Tensor& x) const;
  void send_prev(const core::Tensor& dx) const;
  void recv_next(core::Tensor& dx) const;
  // Bytes from the last stage to every other stage (sampled tokens); the others receive them
  // in the order they were sent.
  void send_from_last(const void* data, int64_t bytes) const;
  void recv_from_last(void* data, int64_t bytes) const;
  // The last stage's bytes on every stage (a collective).
  void broadcast_from_last(void* data, int64_t bytes) const;
  // Delivers every send of this stage (device sends included).
  void wait_sends() const;

 private:
  friend void one_forward_one_backward(const PipelineParallel&, int, const std::function<void(int)>&,
                                       const std::function<void(int)>&);
  void send_device(const core::Tensor& x, int peer) const;
  void flush_device_sends() const;
  comm::Communicator group_;
  // Inside one_forward_one_backward: device sends wait for the next receive. Shared by copies.
  std::shared_ptr<bool> paired_ = std::make_shared<bool>(false);
};

// Runs n micro-batches through this stage in the one-forward-one-backward order: warm-up
// forwards (size - rank - 1 of them, the later stages fewer), then alternating forward(i +
// warm-up) and backward(i), then the remaining backwards. At most size - rank micro-batches are
// in flight on a stage, so activation slot i % size is never reused while occupied.
void one_forward_one_backward(const PipelineParallel& pp, int n,
                              const std::function<void(int)>& forward,
                              const std::function<void(int)>& backward);

}  // namespace opd::parallel
