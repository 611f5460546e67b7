#include "comm/device_group.hpp"

#include <chrono>
#include <cstring>

#include "backend/ops.hpp"
#include "comm/mpi_runtime.hpp"
#include "core/error.hpp"

namespace opd::comm {

namespace {
struct Timed {  // device collectives count as communication time, like the MPI ones
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  ~Timed() {
    add_communication_seconds(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
};
}  // namespace

int use_local_cuda_device() {
  const int n = backend::cuda_device_count();
  if (n == 0) return -1;
  const int device = local_rank() % n;
  return backend::use_cuda_device(device) ? device : -1;
}

#ifndef OPD_DEVICE_EMULATION  // (device_group_emulated.cpp defines what follows)

DeviceGroup::DeviceGroup(const Communicator& comm) : rank_(comm.rank()), size_(comm.size()) {
  // 1. Every rank checks NCCL and a GPU; all fail together if any rank cannot go on.
  try {
    library_ = backend::require_device_comm();
  } catch (const Error&) {
    comm.allreduce_max(1);
    throw;
  }
  if (comm.allreduce_max(0) != 0)
    input_error("nccl", "another rank of this group cannot run NCCL (its own message says why)",
                "see the first error message of the run");
  // 2. Rank 0 makes the id; a status byte travels with it so that its failure reaches everyone.
  std::array<char, 1 + backend::kDeviceCommIdBytes> packet{};
  std::string rank0_error;
  if (comm.rank() == 0) {
    try {
      const backend::DeviceCommId id = backend::new_device_comm_id();
      std::memcpy(packet.data() + 1, id.data(), id.size());
    } catch (const Error& e) {
      packet[0] = 1;
      rank0_error = e.what();
    }
  }
  comm.broadcast(packet.data(), static_cast<int64_t>(packet.size()), 0);
  if (packet[0] != 0)
    input_error("nccl",
                comm.rank() == 0 ? rank0_error : "rank 0 could not make the NCCL id (see its message)");
  backend::DeviceCommId id{};
  std::memcpy(id.data(), packet.data() + 1, id.size());
  // 3. Every rank joins (NCCL's init is itself collective).
  comm_ = std::make_unique<backend::DeviceComm>(comm.rank(), comm.size(), id);
}

void DeviceGroup::allreduce_sum(core::Tensor& x) const {
  const Timed timed;
  comm_->allreduce_sum(x);
}
void DeviceGroup::broadcast(core::Tensor& x, int root) const {
  const Timed timed;
  comm_->broadcast(x, root);
}
void DeviceGroup::allgather(const core::Tensor& local, core::Tensor& out) const {
  const Timed timed;
  comm_->allgather(local, out);
}
void DeviceGroup::allgather_columns(const core::Tensor& local, core::Tensor& full) const {
  const Timed timed;
  comm_->allgather_columns(local, full);
}
void DeviceGroup::start_allreduce_sum(core::Tensor& x) const {
  const Timed timed;
  comm_->start_allreduce_sum(x);
}
void DeviceGroup::wait() const {
  const Timed timed;
  comm_->wait();
}
void DeviceGroup::send(const core::Tensor& x, int peer) const {
  const Timed timed;
  comm_->send(x, peer);
}
void DeviceGroup::start_sends() const {
  const Timed timed;
  comm_->start_sends();
}
void DeviceGroup::recv(core::Tensor& x, int peer) const {
  const Timed timed;
  comm_->recv(x, peer);
}
void DeviceGroup::flush_sends() const {
  const Timed timed;
  comm_->flush_sends();
}

#endif  // OPD_DEVICE_EMULATION

}  // namespace opd::comm
