// DeviceComm in a build without the CUDA backend: there are no CUDA tensors to communicate, so
// every entry point says how to get a build that has them. (With the CUDA backend,
// backend/cuda/nccl_comm.cpp defines these.)
#include "backend/device_comm.hpp"

#ifndef OPD_WITH_CUDA

#include "core/error.hpp"

namespace opd::backend {

namespace {
[[noreturn]] void no_cuda() {
  input_error("nccl", "collectives on CUDA tensors need the CUDA backend, and opd was built without it",
              "rebuild on a machine with nvcc (cmake -DOPD_CUDA=ON), or run with device = \"cpu\"");
}
}  // namespace

struct DeviceComm::Impl {};

int cuda_device_count() { return 0; }
std::string require_device_comm() { no_cuda(); }
DeviceCommId new_device_comm_id() { no_cuda(); }

DeviceComm::DeviceComm(int, int, const DeviceCommId&) { no_cuda(); }
DeviceComm::~DeviceComm() = default;
int DeviceComm::rank() const { no_cuda(); }
int DeviceComm::size() const { no_cuda(); }
void DeviceComm::allreduce_sum(core::Tensor&) { no_cuda(); }
void DeviceComm::broadcast(core::Tensor&, int) { no_cuda(); }
void DeviceComm::allgather(const core::Tensor&, core::Tensor&) { no_cuda(); }
void DeviceComm::allgather_columns(const core::Tensor&, core::Tensor&) { no_cuda(); }
void DeviceComm::start_allreduce_sum(core::Tensor&) { no_cuda(); }
void DeviceComm::wait() {}
void DeviceComm::send(const core::Tensor&, int) { no_cuda(); }
void DeviceComm::start_sends() {}
void DeviceComm::recv(core::Tensor&, int) { no_cuda(); }
void DeviceComm::flush_sends() {}
bool DeviceComm::sends_queued() const { return false; }
void take_column_block(const core::Tensor&, int64_t, core::Tensor&) { no_cuda(); }

}  // namespace opd::backend

#endif  // OPD_WITH_CUDA
