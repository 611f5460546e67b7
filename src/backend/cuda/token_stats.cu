// CUDA token_stats (backend/ops.hpp): one block per row running token_stats_row.hpp's code.
#include "backend/cuda/cuda_block.cuh"
#include "backend/cuda/cuda_distill_ops.hpp"
#include "backend/cuda/token_stats_prepare.hpp"

namespace opd::backend::cuda {

namespace {
struct StatsRow {
  __device__ void operator()(CudaBlock& b, const rows::StatsParams& P, int64_t r) const {
    rows::token_stats_row(b, P, r);
  }
};
}  // namespace

void token_stats(const Tensor& z, const TeacherRows& teacher, const Tensor& y, int diag_k,
                 TokenStats& out, const ShardRows* shard) {
  DeviceStaging st;
  const rows::StatsParams P = rows::prepare_token_stats(st, z, teacher, y, diag_k, out, shard);
  launch_rows<StatsRow>("token_stats", z.dim(0), P);
}

}  // namespace opd::backend::cuda
