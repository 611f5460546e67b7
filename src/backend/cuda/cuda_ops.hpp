// The CUDA implementations of backend/ops.hpp (device tensors; fp32, with bf16 GEMM operands and casts for mixed precision): one op family per
// .cu file. backend/ops_*.cpp dispatch here when a tensor lives on a CUDA device. Semantics,
// shapes and conventions are ops.hpp's; every op is checked against the CPU backend by
// tests/backend/test_cuda_ops.cpp on a GPU machine (tests/gpu/run.sh).
#pragma once

#include "backend/ops.hpp"

namespace opd::backend::cuda {

// elementwise.cu
void fill(Tensor& x, float value);
void copy(const Tensor& src, Tensor& dst);
void cast(const Tensor& src, Tensor& dst);
void scale(Tensor& x, float alpha);
void axpy(float alpha, const Tensor& x, Tensor& y);
void add(const Tensor& a, const Tensor& b, Tensor& out);
void add_bias(Tensor& x, const Tensor& bias);
void bias_backward(const Tensor& dy, Tensor& dbias);
double sum_squares(const Tensor& x);
// gemm.cu (cuBLASLt)
void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, float alpha,
          float beta);
void gemm_residual(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                   const Tensor& residual, Tensor& out);
void gemm_batched(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                  float alpha, float beta);
// embedding.cu
void embedding_forward(const Tensor& table, const Tensor& ids, Tensor& out,
                       const VocabRange& range);
void embedding_backward(const Tensor& d_out, const Tensor& ids, Tensor& d_table,
                        const VocabRange& range);
// norms.cu: RMSNorm, RoPE, SwiGLU
void rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, Tensor& y, Tensor* rstd);
void rmsnorm_backward(const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dy,
                      Tensor& dx, Tensor& dw);
void rope_forward(Tensor& x, const Tensor& pos, float theta);
void rope_backward(Tensor& dx, const Tensor& pos, float theta);
void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& out);
void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& d_out, Tensor& d_gate,
                     Tensor& d_up);
// attention_forward.cu, attention_backward.cu (flash-style, from the lse), attention_probs.cu (P kept)
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_pos,
                       float scale, Tensor& out, Tensor* probs, Tensor* lse,
                       core::DType operands);
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,
                        const Tensor& d_out, float scale, Tensor& dq, Tensor& dk, Tensor& dv);
void attention_backward_from_lse(const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& q_pos, const Tensor& lse, const Tensor& d_out,
                                 float scale, Tensor& dq, Tensor& dk, Tensor& dv,
                                 core::DType operands);
// vocab_rows.cu: row-wise vocabulary ops, the KV-cache scatter, the column gather
void log_softmax_rows(const Tensor& x, Tensor& out);
void logsumexp_rows(const Tensor& x, Tensor& out);
void entropy_rows(const Tensor& x, Tensor& out);
void topk_rows(const Tensor& x, int k, Tensor& vals, Tensor& ids);
void scatter_rows(const Tensor& src, const Tensor& pos, Tensor& dst);
void gather_cols(const Tensor& x, const Tensor& ids, Tensor& out);
// lm_head.cu: the vocabulary-chunked head
void lm_head_stats(const Tensor& h, const Tensor& w, const Tensor* targets, float temperature,
                   int64_t chunk, HeadStats& out, const VocabRange& range);
void lm_head_cross_entropy_backward(const Tensor& h, const Tensor& w, const Tensor& targets,
                                    const Tensor& lse, const Tensor& d_loss, float temperature,
                                    int64_t chunk, Tensor& dh, Tensor& dw, const VocabRange& range);
// adamw.cu
void adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWParams& hp);

}  // namespace opd::backend::cuda
