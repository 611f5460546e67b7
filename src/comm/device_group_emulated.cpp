// DeviceGroup in a device-emulation build (core/device_access.hpp): the "CUDA" tensors are host
// memory, and the group's collectives carry them over an MPI communicator of the same ranks
// (split off at creation, so that its messages never meet the host traffic, as NCCL's own
// channels do not). The semantics are the NCCL group's (device_comm.hpp); the sends start at
// once, which MPI's buffered sends allow without the NCCL ordering hazards.
#include "comm/device_group.hpp"

#ifdef OPD_DEVICE_EMULATION

#include <cstring>
#include <vector>

#include "core/bf16.hpp"
#include "core/device_access.hpp"
#include "core/error.hpp"

namespace opd::comm {

namespace {
constexpr int kTag = 31;  // the only traffic on the group's own communicator
}  // namespace

DeviceGroup::DeviceGroup(const Communicator& comm)
    : host_(std::make_unique<Communicator>(comm.split(0, comm.rank()))),
      rank_(comm.rank()),
      size_(comm.size()),
      library_("device emulation (MPI)") {}

void DeviceGroup::allreduce_sum(core::Tensor& x) const {
  const core::DeviceAccess access;
  if (x.dtype() == core::DType::F32) {
    host_->allreduce_sum(x.data<float>(), x.numel());
    return;
  }
  OPD_CHECK(x.dtype() == core::DType::BF16, "device allreduce of ", x.describe());
  uint16_t* bits = x.data<uint16_t>();
  std::vector<float> wide(static_cast<std::size_t>(x.numel()));
  for (std::size_t i = 0; i < wide.size(); ++i) wide[i] = core::bf16_to_float(bits[i]);
  host_->allreduce_sum(wide.data(), x.numel());
  for (std::size_t i = 0; i < wide.size(); ++i) bits[i] = core::float_to_bf16(wide[i]);
}

void DeviceGroup::broadcast(core::Tensor& x, int root) const {
  const core::DeviceAccess access;
  host_->broadcast(x.raw(), static_cast<int64_t>(x.bytes()), root);
}

void DeviceGroup::allgather(const core::Tensor& local, core::Tensor& out) const {
  const core::DeviceAccess access;
  OPD_CHECK(out.dtype() == local.dtype() && out.numel() == local.numel() * size_,
            "device allgather of ", local.describe(), " into ", out.describe());
  // Any dtype as bytes: each rank's block, broadcast from it in turn.
  const std::size_t bytes = local.bytes();
  char* at = static_cast<char*>(out.raw());
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) std::memcpy(at + r * bytes, local.raw(), bytes);
    host_->broadcast(at + r * bytes, static_cast<int64_t>(bytes), r);
  }
}

void DeviceGroup::allgather_columns(const core::Tensor& local, core::Tensor& full) const {
  const int64_t M = local.dim(0), C = local.dim(1), P = size_;
  OPD_CHECK(full.ndim() == 2 && full.dim(0) == M && full.dim(1) == P * C && full.dtype() == local.dtype(),
            "device allgather_columns of ", local.describe(), " into ", full.describe());
  core::Tensor blocks = core::Tensor::empty({P, M, C}, local.dtype(), local.device());
  allgather(local, blocks);
  const core::DeviceAccess access;
  const std::size_t row = static_cast<std::size_t>(C) * core::dtype_size(local.dtype());
  const char* in = static_cast<const char*>(blocks.raw());
  char* out = static_cast<char*>(full.raw());
  for (int64_t p = 0; p < P; ++p)
    for (int64_t m = 0; m < M; ++m)
      std::memcpy(out + (m * P + p) * row, in + (p * M + m) * row, row);
}

void DeviceGroup::start_allreduce_sum(core::Tensor& x) const { allreduce_sum(x); }
void DeviceGroup::wait() const {}

void DeviceGroup::send(const core::Tensor& x, int peer) const {
  const core::DeviceAccess access;
  host_->isend(x.raw(), static_cast<int64_t>(x.bytes()), peer, kTag);  // copies the bytes
}

void DeviceGroup::start_sends() const {}

void DeviceGroup::recv(core::Tensor& x, int peer) const {
  const core::DeviceAccess access;
  host_->recv(x.raw(), static_cast<int64_t>(x.bytes()), peer, kTag);
}

void DeviceGroup::flush_sends() const { host_->wait_sends(); }

}  // namespace opd::comm

#endif  // OPD_DEVICE_EMULATION
