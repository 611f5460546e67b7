// Collectives and point-to-point transfers on CUDA tensors between ranks (NCCL, loaded at run
// time: backend/cuda/nccl_library.hpp), behind an interface free of CUDA headers so that comm/
// can hold one. comm/device_group.hpp creates them (rank 0 makes the id, MPI carries it); this
// layer knows nothing of MPI. Without the CUDA backend every entry point is a clear Input error.
//
// Ordering: each DeviceComm runs its NCCL calls on its own CUDA stream. Before each call that
// stream waits for the work already queued on the compute stream (the default stream the ops
// use), so the tensors hold their final values; blocking calls return once the result is in
// place, so the ops queued afterwards see it.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "core/tensor.hpp"

namespace opd::backend {

constexpr std::size_t kDeviceCommIdBytes = 128;  // NCCL's unique id
using DeviceCommId = std::array<char, kDeviceCommIdBytes>;

// CUDA devices visible to this process (0 without a driver, a device or the CUDA backend;
// kEmulatedDevices in a device-emulation build, core/device_access.hpp).
int cuda_device_count();
constexpr int kEmulatedDevices = 8;
// Throws the Input error a DeviceComm would (no CUDA backend, NCCL not found); returns NCCL's
// version and path ("2.28.3 (/usr/local/cuda/lib64/libnccl.so.2)") when it is usable. Call it on
// every rank before exchanging an id, so that one rank's failure cannot leave the others waiting.
std::string require_device_comm();
// A fresh id for a new group; one rank makes it and every member constructs with it.
DeviceCommId new_device_comm_id();

class DeviceComm {
 public:
  // Joins the group `id` as `rank` of `size` on the current CUDA device. Collective: every
  // member calls it with the same id (it returns when all have).
  DeviceComm(int rank, int size, const DeviceCommId& id);
  ~DeviceComm();
  DeviceComm(const DeviceComm&) = delete;
  DeviceComm& operator=(const DeviceComm&) = delete;

  int rank() const;
  int size() const;

  // Blocking collectives on CUDA tensors (the result is in place on return).
  void allreduce_sum(core::Tensor& x);  // F32 or BF16, in place
  void broadcast(core::Tensor& x, int root);  // any dtype, root's values everywhere
  // Every rank's `local` (same dtype and numel) concatenated in rank order into `out`.
  void allgather(const core::Tensor& local, core::Tensor& out);
  // local [M, C] on every rank -> full [M, size * C], rank r's columns at [r C, (r + 1) C).
  void allgather_columns(const core::Tensor& local, core::Tensor& full);

  // A sum that returns at once (the gradient buckets overlap it with the backward pass): x must
  // stay untouched until wait(), which blocks until every started sum is in place.
  void start_allreduce_sum(core::Tensor& x);
  void wait();

  // Point to point. send() copies x at once (the caller may overwrite it) and queues the
  // transfer. start_sends() starts the queued sends without waiting for them (they finish when
  // the peers receive); recv() starts them together with the receive, as one NCCL group, and
  // waits for both; flush_sends() starts them and waits for every send of this rank.
  // Two pipeline stages that send to each other and then receive must leave their sends queued
  // until the receive: NCCL runs a group's operations in issue order, so a started send waiting
  // for its peer would hold up this rank's receive while the peer's send waits for it, and a
  // device-wide synchronisation (cudaFree) waits for every started send as well. Messages
  // between two ranks arrive in the order they were sent. The first send or receive between two
  // ranks also waits for the peer's first send to or receive from this rank (a handshake that
  // sets up NCCL's connections in both directions at once).
  void send(const core::Tensor& x, int peer);
  void start_sends();
  void recv(core::Tensor& x, int peer);
  void flush_sends();
  bool sends_queued() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// full [M, P * C] -> local [M, C]: column block `block` (columns [block C, (block + 1) C)), a
// copy on the compute stream. Both CUDA tensors of one dtype.
void take_column_block(const core::Tensor& full, int64_t block, core::Tensor& local);

}  // namespace opd::backend
