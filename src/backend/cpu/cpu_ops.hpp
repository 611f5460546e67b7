// CPU implementations of the op set (Kokkos kernels + OpenBLAS); one op family per .cpp file.
// Same signatures and contracts as backend/ops.hpp, host tensors only.
#pragma once

#include "backend/ops.hpp"

namespace opd::backend::cpu {

void fill(Tensor& x, float value);
void copy(const Tensor& src, Tensor& dst);
void cast(const Tensor& src, Tensor& dst);
void scale(Tensor& x, float alpha);
void axpy(float alpha, const Tensor& x, Tensor& y);
void add(const Tensor& a, const Tensor& b, Tensor& out);
void add_bias(Tensor& x, const Tensor& bias);
void bias_backward(const Tensor& dy, Tensor& dbias);
double sum_squares(const Tensor& x);
void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
          float alpha, float beta);
void gemm_batched(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                  float alpha, float beta);
void embedding_forward(const Tensor& table, const Tensor& ids, Tensor& out,
                       const VocabRange& range);
void embedding_backward(const Tensor& d_out, const Tensor& ids, Tensor& d_table,
                        const VocabRange& range);
void rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, Tensor& y, Tensor* rstd);
void rmsnorm_backward(const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dy,
                      Tensor& dx, Tensor& dw);
void rope_forward(Tensor& x, const Tensor& pos, float theta);
void rope_backward(Tensor& dx, const Tensor& pos, float theta);
void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& out);
void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& d_out, Tensor& d_gate,
                     Tensor& d_up);
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_pos,
                       float scale, Tensor& out, Tensor* probs, Tensor* lse);
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,
                        const Tensor& d_out, float scale, Tensor& dq, Tensor& dk, Tensor& dv);
void attention_backward_from_lse(const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& q_pos, const Tensor& lse, const Tensor& d_out,
                                 float scale, Tensor& dq, Tensor& dk, Tensor& dv);
void scatter_rows(const Tensor& src, const Tensor& pos, Tensor& dst);
void log_softmax_rows(const Tensor& x, Tensor& out);
void logsumexp_rows(const Tensor& x, Tensor& out);
void entropy_rows(const Tensor& x, Tensor& out);
void topk_rows(const Tensor& x, int k, Tensor& vals, Tensor& ids);
void lm_head_stats(const Tensor& h, const Tensor& w, const Tensor* targets, float temperature,
                   int64_t chunk, HeadStats& out, const VocabRange& range);
void lm_head_cross_entropy_backward(const Tensor& h, const Tensor& w, const Tensor& targets,
                                    const Tensor& lse, const Tensor& d_loss, float temperature,
                                    int64_t chunk, Tensor& dh, Tensor& dw,
                                    const VocabRange& range);
void gather_cols(const Tensor& x, const Tensor& ids, Tensor& out);
void token_stats(const Tensor& z, const TeacherRows& teacher, const Tensor& y, int diag_k,
                 TokenStats& out, const ShardRows* shard);
void objective_rows(const Tensor& z, const TeacherRows& teacher, const Tensor& y,
                    const Tensor& logmu, const Tensor& adv, const Tensor& baseline,
                    const Tensor& w, const ObjectiveArgs& args, Tensor& loss, Tensor& dz,
                    const ShardRows* shard);
void shard_partials(const Tensor& z_local, const VocabRange& range, const Tensor& ids,
                    const Tensor* tail_ids, ShardPartials& out);
ShardRows combine_shards(const std::vector<ShardPartials>& shards, const VocabRange& range,
                         const Tensor& ids, int64_t student_k, int64_t teacher_k);
void shard_topk(const Tensor& x_local, const VocabRange& range, int64_t k,
                std::vector<int32_t>& ids, std::vector<double>& values);
std::vector<int32_t> merge_topk(const std::vector<std::vector<int32_t>>& ids,
                                const std::vector<std::vector<double>>& values, int64_t n,
                                int64_t k);
void shard_full_sums(const Tensor& z_local, const Tensor& u_local, const std::vector<double>& lse,
                     const std::vector<double>& lse_u, double beta, ShardSums& out);
std::vector<double> shard_values(const Tensor& x_local, const VocabRange& range, const Tensor& ids);
void sample_rows(const Tensor& logits, float temperature, int top_k, float top_p,
                 const Tensor& uniforms, Tensor& ids, Tensor& logprobs, int64_t vocab_limit);
void adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWParams& hp);

}  // namespace opd::backend::cpu
