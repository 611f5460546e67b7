// CUDA vocabulary-shard ops (backend/ops.hpp): shard_partials, shard_topk and shard_full_sums
// run one block per row (shard_row.hpp's code), shard_values one thread per id. Each copies
// back only its O(rows x K) results into the host vectors of the contract.
#include "backend/cuda/cuda_block.cuh"
#include "backend/cuda/cuda_distill_ops.hpp"
#include "backend/cuda/shard_row.hpp"

namespace opd::backend::cuda {

namespace {

struct PartialsRow {
  __device__ void operator()(CudaBlock& b, const rows::PartialsParams& P, int64_t r) const {
    rows::partials_row(b, P, r);
  }
};
struct TopkRow {
  __device__ void operator()(CudaBlock& b, const rows::TopkParams& P, int64_t r) const {
    rows::topk_row(b, P, r);
  }
};
struct FullSumsRow {
  __device__ void operator()(CudaBlock& b, const rows::FullSumsParams& P, int64_t r) const {
    rows::full_sums_row(b, P, r);
  }
};

__global__ void values_kernel(const float* x, int64_t V, int64_t begin, const int32_t* ids,
                              int64_t K, int64_t total, double* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = rows::shard_value(x, V, begin, ids, K, i);
}

}  // namespace

void shard_partials(const Tensor& z_local, const VocabRange& range, const Tensor& ids,
                    const Tensor* tail_ids, ShardPartials& out) {
  DeviceStaging st;
  const rows::PartialsParams P = rows::prepare_partials(st, z_local, range, ids, tail_ids);
  launch_rows<PartialsRow>("shard_partials", P.n, P);
  rows::fetch_partials(st, P, out);
}

void shard_topk(const Tensor& x_local, const VocabRange& range, int64_t k,
                std::vector<int32_t>& ids, std::vector<double>& values) {
  DeviceStaging st;
  const rows::TopkParams P = rows::prepare_topk(st, x_local, range, k);
  const int64_t n = x_local.dim(0);
  ids.assign(static_cast<std::size_t>(n * k), -1);
  values.assign(static_cast<std::size_t>(n * k), -rows::kInf);
  if (k == 0) return;
  launch_rows<TopkRow>("shard_topk", n, P);
  st.fetch(ids, static_cast<const int32_t*>(P.ids));
  st.fetch(values, static_cast<const double*>(P.values));
}

void shard_full_sums(const Tensor& z_local, const Tensor& u_local, const std::vector<double>& lse,
                     const std::vector<double>& lse_u, double beta, ShardSums& out) {
  DeviceStaging st;
  const rows::FullSumsParams P = rows::prepare_full_sums(st, z_local, u_local, lse, lse_u, beta);
  launch_rows<FullSumsRow>("shard_full_sums", P.n, P);
  std::vector<double>* dst[4] = {&out.kl_pq, &out.kl_qp, &out.jsd, &out.jsd_pg};
  for (int i = 0; i < 4; ++i) {
    dst[i]->assign(static_cast<std::size_t>(P.n), 0.0);
    st.fetch(*dst[i], static_cast<const double*>(P.out + i * P.n));
  }
}

std::vector<double> shard_values(const Tensor& x_local, const VocabRange& range, const Tensor& ids) {
  DeviceStaging st;
  OPD_CHECK(x_local.defined() && x_local.dtype() == core::DType::F32 &&
                x_local.device() == core::Device::Cuda && x_local.ndim() == 2,
            "shard_values: x must be a CUDA f32 [n, V_local] tensor, got ", x_local.describe());
  OPD_CHECK(ids.defined() && ids.dtype() == core::DType::I32 && ids.ndim() == 2 &&
                ids.dim(0) == x_local.dim(0),
            "shard_values: ids must be i32 [", x_local.dim(0), ", K], got ", ids.describe());
  const int64_t total = ids.numel();
  std::vector<double> out(static_cast<std::size_t>(total), 0.0);
  if (total == 0) return out;
  double* d = st.scratch<double>(total);
  values_kernel<<<blocks_for(total), kThreads, 0, stream()>>>(x_local.data<float>(), x_local.dim(1),
                                                 range.begin, st.in<int32_t>(ids), ids.dim(1),
                                                 total, d);
  check_launch("shard_values");
  st.fetch(out, static_cast<const double*>(d));
  return out;
}

}  // namespace opd::backend::cuda
