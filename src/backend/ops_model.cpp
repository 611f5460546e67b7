// Dispatch on device (DESIGN.md §2) for the model-support ops: the KV-cache row scatter.
#include "backend/cpu/cpu_ops.hpp"
#include "backend/device_check.hpp"
#ifdef OPD_WITH_CUDA
#include "backend/cuda/cuda_ops.hpp"
#endif
#include "backend/ops.hpp"

namespace opd::backend {

void scatter_rows(const Tensor& src, const Tensor& pos, Tensor& dst) {
  OPD_ON_CUDA("scatter_rows", src, scatter_rows(src, pos, dst));
  cpu::scatter_rows(src, pos, dst);
}

}  // namespace opd::backend
