// Dispatch on device (DESIGN.md §2) for the model-support ops: the KV-cache row scatter.
#include "backend/cpu/cpu_ops.hpp"
#include "backend/device_check.hpp"
#include "backend/ops.hpp"

namespace opd::backend {

void scatter_rows(const Tensor& src, const Tensor& pos, Tensor& dst) {
  require_host("scatter_rows", src);
  cpu::scatter_rows(src, pos, dst);
}

}  // namespace opd::backend
