// CUDA objective_rows (backend/ops.hpp): one block per row running objective_row.hpp's code.
#include "backend/cuda/cuda_block.cuh"
#include "backend/cuda/cuda_distill_ops.hpp"
#include "backend/cuda/objective_prepare.hpp"

namespace opd::backend::cuda {

namespace {
struct ObjectiveRow {
  __device__ void operator()(CudaBlock& b, const rows::ObjParams& P, int64_t r) const {
    rows::objective_row(b, P, r);
  }
};
}  // namespace

void objective_rows(const Tensor& z, const TeacherRows& teacher, const Tensor& y,
                    const Tensor& logmu, const Tensor& adv, const Tensor& baseline,
                    const Tensor& w, const ObjectiveArgs& args, Tensor& loss, Tensor& dz,
                    const ShardRows* shard) {
  DeviceStaging st;
  const rows::ObjParams P = rows::prepare_objective(st, z, teacher, y, logmu, adv, baseline, w,
                                                    args, loss, dz, shard);
  launch_rows<ObjectiveRow>("objective_rows", z.dim(0), P);
}

}  // namespace opd::backend::cuda
