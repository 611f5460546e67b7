// Transformer: the Llama/Qwen-family decoder (RMSNorm, RoPE, GQA, SwiGLU, optional QKV bias,
// optional QK-norm, tied or untied embeddings), written once against backend/ops.hpp.
//
// forward() maps token ids to the final normalised hidden states h [B*T, D]; the LM head is
// applied by the caller through the vocab-chunked head ops (so [tokens, vocab] logits never
// exist in training or scoring). With keep_activations the activations are kept and backward()
// turns dL/dh into parameter gradients. With a KVCache, keys and values are written into the
// cache at each token's absolute position, which is how prefill and incremental decode work.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.hpp"
#include "model/model_config.hpp"
#include "model/parameters.hpp"

namespace opd::model {

using core::Tensor;

// Keys and values of every layer for a batch of sequences, at absolute positions.
struct KVCache {
  KVCache(const ModelConfig& cfg, int64_t batch, int64_t capacity);
  int64_t batch = 0, capacity = 0;
  std::vector<Tensor> k, v;  // per layer [batch, capacity, n_kv_heads, head_dim]
};

class Transformer {
 public:
  explicit Transformer(const ModelConfig& cfg);

  const ModelConfig& config() const { return cfg_; }
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

  // Full logits [M, V] for a few rows of h (decoding), logits = h W_head^T.
  void logits(const Tensor& h_rows, Tensor& out);

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
  };

  void ensure_buffers(int64_t batch, int64_t seq, bool keep);
  Tensor& w(std::size_t i) { return params_[i].value; }
  Tensor& g(std::size_t i) { return params_[i].grad; }

  ModelConfig cfg_;
  ParamSet params_;
  std::size_t embed_ = 0, final_norm_ = 0, lm_head_ = 0;
  std::vector<LayerIndex> layers_;

  // Activation buffers, reallocated only when B, T or keep change (first touch of new memory
  // costs more than the arithmetic on these machines).
  int64_t buf_batch_ = -1, buf_seq_ = -1;
  bool buf_keep_ = false;
  std::vector<Tensor> resid_;   // keep: L + 1 residual streams [N, D]; else 2, alternating
  std::vector<LayerActs> acts_; // keep: one per layer; else one shared
  Tensor h_, rstd_f_, tmp_;
  Workspace ws_;

  // What the last forward saw (for backward).
  Tensor ids_, pos_;
  int64_t batch_ = 0, seq_ = 0;
  bool have_activations_ = false;
};

}  // namespace opd::model
