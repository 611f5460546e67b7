// The CUDA implementations of the distillation, vocabulary-shard and sampling ops of
// backend/ops.hpp (device tensors, fp32 logits): sampling.cu, token_stats.cu, objective_rows.cu,
// shard_ops.cu. backend/ops_distill.cpp and ops_vocab.cpp dispatch here when the logits live on
// a CUDA device. Semantics, shapes and conventions are ops.hpp's; each op matches the CPU
// backend (tests/backend/test_cuda_distill_ops.cpp on a GPU; the row code also runs on the host
// in tests/backend/test_cuda_distill_rows.cpp).
//
// Where tensors may live: the logits (z, the teacher's logits, x) and every tensor output must be
// on the device; the small inputs (ids, id lists, per-row scalars, uniforms, ShardRows.ids) may be
// host or device tensors and are uploaded when on the host. The host vectors of ShardRows are
// uploaded (O(rows x K)); the shard ops copy back only their O(rows x K) results.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/ops.hpp"

namespace opd::backend::cuda {

// sampling.cu
void sample_rows(const Tensor& logits, float temperature, int top_k, float top_p,
                 const Tensor& uniforms, Tensor& ids, Tensor& logprobs, int64_t vocab_limit);
// token_stats.cu
void token_stats(const Tensor& z, const TeacherRows& teacher, const Tensor& y, int diag_k,
                 TokenStats& out, const ShardRows* shard);
// objective_rows.cu
void objective_rows(const Tensor& z, const TeacherRows& teacher, const Tensor& y,
                    const Tensor& logmu, const Tensor& adv, const Tensor& baseline,
                    const Tensor& w, const ObjectiveArgs& args, Tensor& loss, Tensor& dz,
                    const ShardRows* shard);
// shard_ops.cu
void shard_partials(const Tensor& z_local, const VocabRange& range, const Tensor& ids,
                    const Tensor* tail_ids, ShardPartials& out);
void shard_topk(const Tensor& x_local, const VocabRange& range, int64_t k,
                std::vector<int32_t>& ids, std::vector<double>& values);
void shard_full_sums(const Tensor& z_local, const Tensor& u_local, const std::vector<double>& lse,
                     const std::vector<double>& lse_u, double beta, ShardSums& out);
std::vector<double> shard_values(const Tensor& x_local, const VocabRange& range, const Tensor& ids);

}  // namespace opd::backend::cuda
