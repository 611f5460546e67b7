// Dispatch on device (DESIGN.md §2) for the distillation ops: column gathers, per-token
// student/teacher statistics and objective gradients.
#include "backend/cpu/cpu_ops.hpp"
#include "backend/device_check.hpp"
#include "backend/ops.hpp"

namespace opd::backend {

void gather_cols(const Tensor& x, const Tensor& ids, Tensor& out) {
  require_host("gather_cols", x);
  cpu::gather_cols(x, ids, out);
}

void token_stats(const Tensor& z, const TeacherRows& teacher, const Tensor& y, int diag_k,
                 TokenStats& out) {
  require_host("token_stats", z);
  cpu::token_stats(z, teacher, y, diag_k, out);
}

void objective_rows(const Tensor& z, const TeacherRows& teacher, const Tensor& y,
                    const Tensor& logmu, const Tensor& adv, const Tensor& baseline,
                    const Tensor& w, const ObjectiveArgs& args, Tensor& loss, Tensor& dz) {
  require_host("objective_rows", z);
  cpu::objective_rows(z, teacher, y, logmu, adv, baseline, w, args, loss, dz);
}

}  // namespace opd::backend
