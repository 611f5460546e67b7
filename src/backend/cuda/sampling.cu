// CUDA sample_rows (backend/ops.hpp): one block per row running sampling_row.hpp's code.
#include "backend/cuda/cuda_block.cuh"
#include "backend/cuda/cuda_distill_ops.hpp"
#include "backend/cuda/sampling_row.hpp"

namespace opd::backend::cuda {

namespace {
struct SampleRow {
  __device__ void operator()(CudaBlock& b, const rows::SampleParams& P, int64_t r) const {
    rows::sample_row(b, P, r);
  }
};
}  // namespace

void sample_rows(const Tensor& logits, float temperature, int top_k, float top_p,
                 const Tensor& uniforms, Tensor& ids, Tensor& logprobs, int64_t vocab_limit) {
  DeviceStaging st;
  const rows::SampleParams P = rows::prepare_sample(st, logits, temperature, top_k, top_p,
                                                    uniforms, ids, logprobs, vocab_limit);
  launch_rows<SampleRow>("sample_rows", logits.dim(0), P);
}

}  // namespace opd::backend::cuda
