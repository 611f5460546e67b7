// CUDA token embedding: row gather (forward) and scatter-add (backward), with vocabulary shards
// (ids outside the shard give zero rows and add nothing). The backward adds with atomics: two
// positions naming the same id add into the same row.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_ops.hpp"

namespace opd::backend::cuda {

namespace {

__global__ void gather_rows(const float* table, const int32_t* ids, float* out, int64_t n,
                            int64_t d, int64_t v, int64_t begin) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n * d; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / d, j = i % d, row = static_cast<int64_t>(ids[r]) - begin;
    out[i] = (row >= 0 && row < v) ? table[row * d + j] : 0.0f;
  }
}

__global__ void scatter_add_rows(const float* grad, const int32_t* ids, float* table, int64_t n,
                                 int64_t d, int64_t v, int64_t begin) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n * d; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / d, j = i % d, row = static_cast<int64_t>(ids[r]) - begin;
    if (row >= 0 && row < v) atomicAdd(&table[row * d + j], grad[i]);
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
  const int64_t n = ids.numel(), d = d_table.dim(1);
  scatter_add_rows<<<blocks_for(n * d), kThreads, 0, stream()>>>(d_out.data<float>(), ids.data<int32_t>(),
                                                   d_table.data<float>(), n, d, d_table.dim(0),
                                                   range.begin);
  check_launch("embedding_backward");
}

}  // namespace opd::backend::cuda
