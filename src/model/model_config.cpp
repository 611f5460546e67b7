#include "model/model_config.hpp"

#include <sstream>

#include "core/error.hpp"

namespace opd::model {

void ModelConfig::validate(const std::string& where) const {
  auto need = [&](bool ok, const std::string& key, const std::string& what) {
    if (!ok) input_error(where + "." + key, what);
  };
  need(vocab_size > 0, "vocab_size", "must be positive (0 means: take it from the tokenizer)");
  need(d_model > 0, "d_model", "must be positive");
  need(n_layers > 0, "n_layers", "must be positive");
  need(n_heads > 0, "n_heads", "must be positive");
  need(n_kv_heads > 0 && n_heads % n_kv_heads == 0, "n_kv_heads",
       "must divide n_heads = " + std::to_string(n_heads));
  need(head_dim > 0 || d_model % n_heads == 0, "n_heads",
       "must divide d_model = " + std::to_string(d_model) + " (or set head_dim)");
  need(head_size() % 2 == 0, "head_dim", "must be even for rotary embeddings");
  need(d_ff > 0, "d_ff", "must be positive");
  need(max_seq_len > 1, "max_seq_len", "must be at least 2");
  need(rope_theta > 0, "rope_theta", "must be positive");
  need(norm_eps > 0, "norm_eps", "must be positive");
  need(init_std > 0, "init_std", "must be positive");
}

void ModelConfig::check_layout(int tp, int pp, const std::string& where,
                               const std::string& layout) const {
  if (pp > n_layers)
    input_error(where + ".n_layers",
                "n_layers = " + std::to_string(n_layers) + " cannot fill " + layout + ".pp = " +
                    std::to_string(pp) + " pipeline stages (each needs a layer)",
                "use pp <= n_layers");
  if (pp > 1 && tie_embeddings)
    input_error(where + ".tie_embeddings",
                "tied embeddings with " + layout + ".pp = " + std::to_string(pp) +
                    " would put one weight on the first and the last stage; not built yet",
                "set tie_embeddings = false or pp = 1");
  if (tp <= 1) return;
  const std::pair<const char*, int64_t> dims[] = {
      {"n_heads", n_heads}, {"n_kv_heads", n_kv_heads}, {"d_ff", d_ff}, {"vocab_size", vocab_size}};
  for (const auto& [key, value] : dims)
    if (value % tp != 0)
      input_error(where + "." + key,
                  std::string(key) + " = " + std::to_string(value) + " does not divide by " +
                      layout + ".tp = " + std::to_string(tp) +
                      " (tensor parallelism splits it evenly over the ranks)",
                  "choose a tp that divides n_heads, n_kv_heads, d_ff and vocab_size");
}

int64_t ModelConfig::parameter_count() const {
  int64_t e = head_size();
  int64_t per_layer = d_model * q_size() + 2 * d_model * kv_size() + q_size() * d_model +
                      3 * d_model * d_ff + 2 * d_model;
  if (qkv_bias) per_layer += q_size() + 2 * kv_size();
  if (qk_norm) per_layer += 2 * e;
  int64_t total = n_layers * per_layer + vocab_size * d_model + d_model;
  if (!tie_embeddings) total += vocab_size * d_model;
  return total;
}

double ModelConfig::train_flops_per_token(int64_t seq_len) const {
  // Matmul parameters seen by every token: the blocks' projections and the LM head (the
  // embedding lookup is no matmul).
  double matmul = static_cast<double>(n_layers) *
                      (d_model * q_size() + 2.0 * d_model * kv_size() + q_size() * d_model +
                       3.0 * d_model * d_ff) +
                  static_cast<double>(vocab_size) * d_model;
  double attention = 12.0 * n_layers * static_cast<double>(seq_len) * q_size();
  return 6.0 * matmul + attention;
}

std::string ModelConfig::describe() const {
  std::ostringstream os;
  os << "vocab_size=" << vocab_size << " d_model=" << d_model << " n_layers=" << n_layers
     << " n_heads=" << n_heads << " n_kv_heads=" << n_kv_heads << " head_dim=" << head_size()
     << " d_ff=" << d_ff << " max_seq_len=" << max_seq_len << " rope_theta=" << rope_theta
     << " norm_eps=" << norm_eps << " qkv_bias=" << qkv_bias << " qk_norm=" << qk_norm
     << " tie_embeddings=" << tie_embeddings;
  return os.str();
}

}  // namespace opd::model
