// DeviceComm in a build without the CUDA backend: there are no CUDA tensors to communicate, so
// every entry point says how to get a build that has them. (With the CUDA backend,
// backend/cuda/nccl_comm.cpp defines these; device emulation has host-memory devices whose
// collectives run over MPI in comm/device_group_emulated.cpp.)
#include "backend/device_comm.hpp"

#ifndef OPD_WITH_CUDA

#include <cstring>

#include "core/device_access.hpp"
#include "core/error.hpp"

namespace opd::backend {

namespace {
[[noreturn]] void no_cuda() {
  input_error("nccl", "collectives on CUDA tensors need the CUDA backend, and opd was built without it",
              "rebuild on a machine with nvcc (cmake -DOPD_CUDA=ON), or run with device = \"cpu\"");
}
}  // namespace

struct DeviceComm::Impl {};

#ifdef OPD_DEVICE_EMULATION
// Emulated devices (core/device_access.hpp): as many as a node of ranks may take, one each; their
// collectives are comm/device_group_emulated.cpp's.
int cuda_device_count() { return kEmulatedDevices; }
std::string require_device_comm() { return "device emulation (MPI)"; }
#else
int cuda_device_count() { return 0; }
std::string require_device_comm() { no_cuda(); }
#endif
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
#ifdef OPD_DEVICE_EMULATION
void take_column_block(const core::Tensor& full, int64_t block, core::Tensor& local) {
  const core::DeviceAccess access;
  const int64_t M = local.dim(0), C = local.dim(1), W = full.dim(1);
  const std::size_t es = core::dtype_size(local.dtype()), row = static_cast<std::size_t>(C) * es;
  OPD_CHECK(full.dtype() == local.dtype() && full.dim(0) == M && (block + 1) * C <= W,
            "take_column_block: ", full.describe(), " block ", block, " into ", local.describe());
  const char* in = static_cast<const char*>(full.raw());
  char* out = static_cast<char*>(local.raw());
  for (int64_t m = 0; m < M; ++m)
    std::memcpy(out + m * row, in + (m * W + block * C) * static_cast<int64_t>(es), row);
}
#else
void take_column_block(const core::Tensor&, int64_t, core::Tensor&) { no_cuda(); }
#endif

}  // namespace opd::backend

#endif  // OPD_WITH_CUDA
