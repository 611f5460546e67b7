// Vocabulary-parallel LM head (DESIGN.md §6): each tensor-parallel rank holds the head rows of
// its vocabulary shard and computes its shard's chunked statistics; the per-row partial results
// are then combined across the group with O(rows) communication, never O(rows x vocabulary):
//   lse       = log sum_r exp(lse_r)                        (max, then a sum of exponentials)
//   target    = sum_r target_r                              (0 on the ranks without it)
//   entropy   = lse - sum_r exp(lse_r - lse) (lse_r - H_r)  (E_p[z] = sum_r p(shard r) E_r[z])
// The cross-entropy backward uses the global lse: each rank forms softmax - onehot over its
// columns, so the head gradient stays sharded and the input gradient is summed.
#pragma once

#include "backend/ops.hpp"
#include "parallel/tensor_parallel.hpp"

namespace opd::parallel {

// backend::lm_head_stats over the whole vocabulary for the head shard w_local [V / tp, D]
// (targets are global ids).
void vocab_parallel_head_stats(const core::Tensor& h, const core::Tensor& w_local,
                               const core::Tensor* targets, float temperature, int64_t chunk,
                               const TensorParallel& tp, backend::HeadStats& out);

// backend::lm_head_cross_entropy_backward for a head shard: dh (overwritten) is the full input
// gradient (summed over the group), dw_local accumulates this shard's rows.
void vocab_parallel_cross_entropy_backward(const core::Tensor& h, const core::Tensor& w_local,
                                           const core::Tensor& targets, const core::Tensor& lse,
                                           const core::Tensor& d_loss, float temperature,
                                           int64_t chunk, const TensorParallel& tp,
                                           core::Tensor& dh, core::Tensor& dw_local);

// The whole-vocabulary row quantities of a block of vocabulary-sharded student logits z_local
// (backend::ShardRows): every rank's partials gathered in one collective of O(rows x ids)
// doubles, then combined identically on every rank. ids, tail_ids, student_k and teacher_k as
// for backend::shard_partials / combine_shards. Full mode (u_local: the teacher's logits on the
// same columns): the teacher's side too, p's and q's top_k lists, and a second collective for
// the sums over the vocabulary (KLs, the JSD at beta) and both logits at those lists' ids.
backend::ShardRows vocab_parallel_rows(const core::Tensor& z_local, const backend::VocabRange& range,
                                       const core::Tensor& ids, const core::Tensor* tail_ids,
                                       int64_t student_k, int64_t teacher_k,
                                       const TensorParallel& tp,
                                       const core::Tensor* u_local = nullptr, int64_t top_k = 0,
                                       double beta = 0.5);

// The k largest of each row of vocabulary-sharded x_local [n, V / tp] over the whole vocabulary
// (each shard's k best gathered and merged; descending, ties to the lower id): values [n, k] F32
// and global ids [n, k] I32, the same on every rank.
void vocab_parallel_topk(const core::Tensor& x_local, const backend::VocabRange& range, int64_t k,
                         const TensorParallel& tp, core::Tensor& values, core::Tensor& ids);
// x at the global ids [n, K] (each held by one shard), on every rank: out [n, K] F32.
void vocab_parallel_gather(const core::Tensor& x_local, const backend::VocabRange& range,
                           const core::Tensor& ids, const TensorParallel& tp, core::Tensor& out);

// The vocabulary range of this rank's shard of a head of `vocab` rows.
backend::VocabRange vocab_shard(int64_t vocab, const TensorParallel& tp);

}  // namespace opd::parallel
