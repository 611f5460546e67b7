// CUDA token embedding: row gather (forward) and scatter-add (backward), with vocabulary shards
// (ids outside the shard give zero rows and add nothing). Positions naming the same id add into
// the same row: the backward groups them by id on the host (the ids are read back, O(n)) and
// one block per id adds its positions in order (ordered_sums.cuh), the CPU backend's order, so
// the gradient has the same bits every run rather than an atomics-dependent sum.
#include "backend/cuda/cuda_block.cuh"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_ops.hpp"
#include "backend/cuda/ordered_sums.cuh"

namespace opd::backend::cuda {

namespace {

__global__ void gather_rows(const float* table, const int32_t* ids, float* out, int64_t n,
                            int64_t d, int64_t v, int64_t begin) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n * d; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / d, j = i % d, row = static_cast<int64_t>(ids[r]) - begin;
    out[i] = (row >= 0 && row < v) ? table[row * d + j] : 0.0f;
  }
}


void check_args(const char* op, const Tensor& table, const Tensor& ids, const Tensor& rows) {
  require_device(op, "table", table);
  require_device(op, "ids", ids, core::DType::I32);
  require_device(op, "rows", rows);
  OPD_CHECK(table.ndim() == 2 && rows.numel() == ids.numel() * table.dim(1), op, ": rows ",
            rows.describe(), " do not match ids ", ids.describe(), " and table ", table.describe());
}

}  // namespace

void embedding_forward(const Tensor& table, const Tensor& ids, Tensor& out, const VocabRange& range) {
  check_args("embedding_forward", table, ids, out);
  const int64_t n = ids.numel(), d = table.dim(1);
  gather_rows<<<blocks_for(n * d), kThreads, 0, stream()>>>(table.data<float>(), ids.data<int32_t>(),
                                              out.data<float>(), n, d, table.dim(0), range.begin);
  check_launch("embedding_forward");
}

void embedding_backward(const Tensor& d_out, const Tensor& ids, Tensor& d_table,
                        const VocabRange& range) {
  check_args("embedding_backward", d_table, ids, d_out);
  const int64_t n = ids.numel(), d = d_table.dim(1), v = d_table.dim(0);
  if (n == 0 || d == 0) return;
  OPD_CHECK(n < (int64_t{1} << 31), "embedding_backward: ", n, " positions exceed int32 indexing");
  DeviceStaging st;
  const ordered::Segments seg = ordered::segments_of(st.host<int32_t>(ids), range.begin, v);
  if (seg.row.empty()) return;
  ordered::add_segments<<<static_cast<unsigned>(seg.row.size()), ordered::kThreads, 0, stream()>>>(
      d_out.data<float>(), st.in(seg.order), st.in(seg.begin), st.in(seg.row), d,
      d_table.data<float>());
  check_launch("embedding_backward");
}

}  // namespace opd::backend::cuda
