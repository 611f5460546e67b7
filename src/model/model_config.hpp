// ModelConfig: the shape of a Llama/Qwen-family decoder (DESIGN.md §2) and its validation.
#pragma once

#include <cstdint>
#include <string>

namespace opd::model {

struct ModelConfig {
  int64_t vocab_size = 0;
  int64_t d_model = 128;
  int64_t n_layers = 2;
  int64_t n_heads = 4;
  int64_t n_kv_heads = 4;   // grouped-query attention: n_heads % n_kv_heads == 0
  int64_t head_dim = 0;     // 0: d_model / n_heads
  int64_t d_ff = 512;       // SwiGLU hidden size
  int64_t max_seq_len = 256;
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  bool qkv_bias = false;    // Qwen2
  bool qk_norm = false;     // Qwen3: RMSNorm over each head of q and k before RoPE
  bool tie_embeddings = false;
  double init_std = 0.02;

  int64_t head_size() const { return head_dim > 0 ? head_dim : d_model / n_heads; }
  int64_t q_size() const { return n_heads * head_size(); }
  int64_t kv_size() const { return n_kv_heads * head_size(); }

  // Throws an Input error naming the field (prefixed by `where`) for impossible shapes.
  void validate(const std::string& where) const;
  // Throws an Input error when the shapes cannot be split over `tp` tensor-parallel ranks
  // (heads, kv heads, d_ff and the vocabulary must divide by tp) and `pp` pipeline stages (at
  // least one layer each; untied embeddings); `layout` names the setting.
  void check_layout(int tp, int pp, const std::string& where, const std::string& layout) const;
  // Parameter count, and the training FLOPs per token (6 * matmul params + attention), used by
  // the benchmarks: attention adds 12 * n_layers * seq * q_size (QK^T and PV, 2 FLOPs per
  // multiply-add, forward + backward; the causal half counted as full, as is customary).
  int64_t parameter_count() const;
  double train_flops_per_token(int64_t seq_len) const;
  // A canonical one-line description (stored in checkpoints, compared on load).
  std::string describe() const;
};

}  // namespace opd::model
