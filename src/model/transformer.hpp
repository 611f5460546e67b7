// Transformer: the Llama/Qwen-family decoder (RMSNorm, RoPE, GQA, SwiGLU, optional QKV bias,
// optional QK-norm, tied or untied embeddings), written once against backend/ops.hpp.
//
// forward() maps token ids to the final normalised hidden states h [B*T, D]; the LM head is
// applied by the caller through the vocab-chunked head ops (so [tokens, vocab] logits never
// exist in training or scoring). With keep_activations the activations are kept and backward()
// turns dL/dh into parameter gradients. With a KVCache, keys and values are written into the
// cache at each token's absolute position, which is how prefill and incremental decode work.
//
// Tensor parallelism (DESIGN.md §6): with a group of tp ranks, q/k/v and gate/up are
// column-parallel (each rank holds n_heads/tp query heads, n_kv_heads/tp kv heads, d_ff/tp
// hidden units), o_proj and down_proj row-parallel (their partial products are summed over the
// group: one all-reduce per block forward, one per block backward), and the embedding and LM head
// vocab-parallel. Norm gains are replicated; hidden states h are whole on every rank.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/ops.hpp"
#include "core/tensor.hpp"
#include "model/model_config.hpp"
#include "model/parameters.hpp"
#include "parallel/tensor_parallel.hpp"

namespace opd::model {

using core::Tensor;

// Keys and values of every layer for a batch of sequences, at absolute positions.
struct KVCache {
  // With tensor parallelism each rank caches its n_kv_heads / tp heads.
  KVCache(const ModelConfig& cfg, int64_t batch, int64_t capacity, int tp = 1);
  int64_t batch = 0, capacity = 0;
  std::vector<Tensor> k, v;  // per layer [batch, capacity, n_kv_heads, head_dim]
};

class Transformer {
 public:
  // tp: the tensor-parallel group this rank's shards belong to (default: one rank, whole model).
  explicit Transformer(const ModelConfig& cfg, parallel::TensorParallel tp = {});

  const ModelConfig& config() const { return cfg_; }
  const parallel::TensorParallel& tensor_parallel() const { return params_.tensor_parallel(); }
  ParamSet& params() { return params_; }
  const ParamSet& params() const { return params_; }
  // The LM head weight [V, D] and its gradient (the embedding's when tied).
  Param& lm_head() { return params_[lm_head_]; }

  // Normal(0, init_std) matrices (output projections scaled by 1/sqrt(2 n_layers)), unit norm
  // gains, zero biases. Deterministic in seed: each parameter has its own Philox stream.
  void init_weights(uint64_t seed);

  // ids [B, T] I32, pos [B, T] I32 (absolute positions; the query at pos p sees keys 0..p).
  // Returns h [B*T, D], valid until the next forward.
  const Tensor& forward(const Tensor& ids, const Tensor& pos, bool keep_activations,
                        KVCache* cache = nullptr);
  // After forward(keep_activations = true): accumulates parameter gradients from d_h [B*T, D].
  void backward(const Tensor& d_h);

  // Full logits [M, V] for a few rows of h (decoding, blocks of response rows), logits =
  // h W_head^T (gathered over the vocabulary shards).
  void logits(const Tensor& h_rows, Tensor& out);
  // Back through logits(): given dL/dlogits [M, V] (whole on every rank), writes dL/dh_rows
  // [M, D] (overwrite) and accumulates this rank's shard of the head gradient.
  void logits_backward(const Tensor& h_rows, const Tensor& d_logits, Tensor& d_h_rows);

 private:
  struct LayerIndex {
    std::size_t attn_norm, q, k, v, o, mlp_norm, gate, up, down;
    std::size_t q_bias = 0, k_bias = 0, v_bias = 0, q_norm = 0, k_norm = 0;
  };
  struct LayerActs {
    Tensor xn1, rstd1, q_raw, k_raw, rstd_q, rstd_k, q, k, v, probs, attn, x_mid, xn2, rstd2,
        gate, up, act;
  };
  struct Workspace {  // backward scratch, sized for the last forward's B, T
    Tensor dx, tmp, d_xn, d_attn, dq, dk, dv, dq_raw, dk_raw, d_act, d_gate, d_up;
    Tensor d_qnorm, d_knorm;  // tp > 1: this rank's part of the shared QK-norm gain gradients
  };

  void ensure_buffers(int64_t batch, int64_t seq, bool keep);
  // Sums a row-parallel partial product (or a column-parallel input gradient) over the group.
  void reduce(Tensor& x) const { tensor_parallel().allreduce_sum(x); }
  backend::VocabRange vocab_range() const;  // this rank's rows of the embedding and head
  Tensor local_logits(int64_t rows);        // [rows, V/tp] scratch
  Tensor& w(std::size_t i) { return params_[i].value; }
  Tensor& g(std::size_t i) { return params_[i].grad; }

  ModelConfig cfg_;
  ParamSet params_;
  // This rank's share: query heads, kv heads, MLP hidden units, vocabulary rows.
  int64_t heads_ = 0, kv_heads_ = 0, ff_ = 0, vocab_ = 0;
  std::size_t embed_ = 0, final_norm_ = 0, lm_head_ = 0;
  std::vector<LayerIndex> layers_;

  // Activation buffers, reallocated only when B, T or keep change (first touch of new memory
  // costs more than the arithmetic on these machines).
  int64_t buf_batch_ = -1, buf_seq_ = -1;
  bool buf_keep_ = false;
  std::vector<Tensor> resid_;   // keep: L + 1 residual streams [N, D]; else 2, alternating
  std::vector<LayerActs> acts_; // keep: one per layer; else one shared
  Tensor h_, rstd_f_, tmp_, head_local_;  // head_local_: [M, V/tp] logits when tp > 1
  Workspace ws_;

  // What the last forward saw (for backward).
  Tensor ids_, pos_;
  int64_t batch_ = 0, seq_ = 0;
  bool have_activations_ = false;
};

}  // namespace opd::model
