// A communicator over host buffers (MPI). Without MPI running it is the one-rank communicator,
// whose collectives are identities, so single-process code needs no special case. Its
// device_group() carries the same ranks' collectives on CUDA tensors (NCCL, comm/device_group.hpp).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace opd::comm {

// Seconds this process has spent in Communicator calls so far (transfers and waiting for the
// other ranks): the difference over a step is its communication time.
double mpi_seconds();
// Adds to mpi_seconds() (the device collectives count as communication too).
void add_communication_seconds(double seconds);

class DeviceGroup;

class Communicator {
 public:
  // MPI_COMM_WORLD when MPI is running, else the one-rank communicator.
  static Communicator world();
  // A sub-communicator of the ranks passing the same colour, ordered by key.
  Communicator split(int colour, int key) const;

  int rank() const { return rank_; }
  int size() const { return size_; }

  void allreduce_sum(float* data, int64_t n) const;
  void allreduce_sum(double* data, int64_t n) const;
  void allreduce_sum(int64_t* data, int64_t n) const;
  int allreduce_max(int value) const;
  double allreduce_max(double value) const;
  // Every rank's `local` values, concatenated in rank order.
  std::vector<double> allgather(const std::vector<double>& local) const;
  // Every rank's n floats, concatenated in rank order into out [size * n].
  void allgather(const float* local, int64_t n, float* out) const;
  void broadcast(void* data, int64_t bytes, int root) const;
  // Every rank's bytes at `root`, in rank order (empty elsewhere).
  std::vector<std::string> gather(const std::string& mine, int root) const;
  void send(const void* data, int64_t bytes, int dest, int tag) const;
  // A send that does not wait for the receiver: the bytes are copied first, so the caller may
  // reuse its buffer at once (pipeline stages send activations and go on computing). Completed
  // sends are reaped at the next isend; wait_sends() waits for all of them.
  void isend(const void* data, int64_t bytes, int dest, int tag) const;
  void wait_sends() const;
  // An all-reduce that returns at once; `data` must stay untouched until wait_reductions().
  // progress() lets the ones in flight advance (MPI moves them only inside its calls).
  void iallreduce_sum(float* data, int64_t n) const;
  void progress() const;
  void wait_reductions() const;
  void recv(void* data, int64_t bytes, int source, int tag) const;
  void barrier() const;
  // The MPI_Comm behind this communicator (as a pointer to it; null for the one-rank
  // communicator without MPI). Read it through comm/mpi_native.hpp.
  const void* native_handle() const;
  // The NCCL group of these ranks, shared by every copy of this communicator. The first call
  // creates it and is collective (every rank of the communicator calls it; see DeviceGroup).
  const DeviceGroup& device_group() const;
  // Whether device_group() has been created (no NCCL is touched before a device collective).
  bool has_device_group() const;

 private:
  struct Handle;                   // holds the MPI_Comm, so this header needs no mpi.h
  std::shared_ptr<Handle> handle_;  // null: the one-rank communicator
  int rank_ = 0, size_ = 1;
};

}  // namespace opd::comm
