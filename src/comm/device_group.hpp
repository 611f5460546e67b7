// The device (NCCL) side of a Communicator: the same ranks, exchanging CUDA tensors GPU to GPU.
// A Communicator creates its DeviceGroup on the first device collective (Communicator::
// device_group()), collectively: every rank checks that NCCL is usable and agrees on it over
// MPI (so a rank without NCCL fails everywhere instead of leaving the others waiting), rank 0
// makes the NCCL id and MPI broadcasts it, then every rank joins.
//
// One rank per GPU: before any device tensor exists, each rank selects the GPU of its node-local
// rank (use_local_cuda_device()); NCCL refuses two ranks of one group on one GPU.
#pragma once

#include <memory>
#include <string>

#include "backend/device_comm.hpp"
#include "comm/communicator.hpp"
#include "core/tensor.hpp"

namespace opd::comm {

// Makes GPU local_rank() (comm/mpi_runtime.hpp) % (visible GPUs) this rank's device (backend::use_cuda_device) and
// returns its index; -1 when there is no GPU (or no CUDA backend).
int use_local_cuda_device();

class DeviceGroup {
 public:
  // Collective over `comm` (see above); Input errors when NCCL or a GPU is missing.
  explicit DeviceGroup(const Communicator& comm);

  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& library() const { return library_; }  // NCCL version and path

  // The backend::DeviceComm operations (see there), counted in comm::mpi_seconds().
  void allreduce_sum(core::Tensor& x) const;
  void broadcast(core::Tensor& x, int root) const;
  void allgather(const core::Tensor& local, core::Tensor& out) const;
  void allgather_columns(const core::Tensor& local, core::Tensor& full) const;
  void start_allreduce_sum(core::Tensor& x) const;
  void wait() const;
  void send(const core::Tensor& x, int peer) const;
  void start_sends() const;
  void recv(core::Tensor& x, int peer) const;
  void flush_sends() const;

 private:
  std::unique_ptr<backend::DeviceComm> comm_;
  // Device emulation (core/device_access.hpp, comm/device_group_emulated.cpp): the same ranks'
  // own MPI communicator carries the host-memory "device" tensors instead of NCCL.
  std::unique_ptr<Communicator> host_;
  int rank_ = 0, size_ = 1;
  std::string library_;
};

}  // namespace opd::comm
