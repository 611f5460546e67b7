#include "parallel/tensor_parallel.hpp"

#include <cstring>
#include <vector>

#include "backend/device_comm.hpp"
#include "backend/ops.hpp"
#include "comm/device_group.hpp"
#include "core/error.hpp"

namespace opd::parallel {

using core::Tensor;

void TensorParallel::allreduce_sum(Tensor& x) const {
  if (size() == 1) return;
  if (x.device() == core::Device::Cuda) {
    group_.device_group().allreduce_sum(x);  // F32 or BF16
    return;
  }
  OPD_CHECK(x.dtype() == core::DType::F32 && x.is_host(), "tensor-parallel allreduce of ",
            x.describe());
  group_.allreduce_sum(x.data<float>(), x.numel());
}

void TensorParallel::gather_columns(const Tensor& local, Tensor& full) const {
  const int64_t M = local.dim(0), C = local.dim(1), P = size();
  OPD_CHECK(full.ndim() == 2 && full.dim(0) == M && full.dim(1) == C * P,
            "gather_columns: ", local.describe(), " into ", full.describe());
  OPD_CHECK(full.device() == local.device(), "gather_columns: ", local.describe(), " into ",
            full.describe());
  if (full.device() == core::Device::Cuda) {
    if (P == 1)
      backend::copy(local, full);
    else
      group_.device_group().allgather_columns(local, full);
    return;
  }
  if (P == 1) {
    std::memcpy(full.raw(), local.raw(), local.bytes());
    return;
  }
  // The collective delivers [P, M, C] (rank-major); rows are then interleaved into [M, P * C].
  thread_local std::vector<float> buf;
  buf.resize(static_cast<std::size_t>(P * M * C));
  group_.allgather(local.data<float>(), M * C, buf.data());
  float* out = full.data<float>();
  for (int64_t p = 0; p < P; ++p)
    for (int64_t m = 0; m < M; ++m)
      std::memcpy(out + m * P * C + p * C, buf.data() + (p * M + m) * C, C * sizeof(float));
}

void TensorParallel::take_columns(const Tensor& full, Tensor& local) const {
  const int64_t M = local.dim(0), C = local.dim(1), P = size();
  OPD_CHECK(full.ndim() == 2 && full.dim(0) == M && full.dim(1) == C * P,
            "take_columns: ", full.describe(), " into ", local.describe());
  OPD_CHECK(full.device() == local.device(), "take_columns: ", full.describe(), " into ",
            local.describe());
  if (full.device() == core::Device::Cuda) {  // a local strided copy: no communication
    backend::take_column_block(full, rank(), local);
    return;
  }
  const float* in = full.data<float>() + rank() * C;
  float* out = local.data<float>();
  for (int64_t m = 0; m < M; ++m) std::memcpy(out + m * C, in + m * P * C, C * sizeof(float));
}

}  // namespace opd::parallel
