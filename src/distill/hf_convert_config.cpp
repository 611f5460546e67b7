// config.json <-> ModelConfig (see hf_convert_config.hpp). Defaults for absent keys are those of
// transformers' LlamaConfig, Qwen2Config and Qwen3Config, so a config means here what it means
// there.
#include "distill/hf_convert_config.hpp"

#include "core/error.hpp"

namespace opd::distill {

using json = nlohmann::json;

namespace {

struct Family {
  const char* model_type;
  const char* architecture;
  bool qkv_bias, qk_norm;
  int64_t default_max_positions;
  int64_t default_head_dim;  // 0: hidden_size / num_attention_heads
};
constexpr Family kFamilies[] = {
    {"llama", "LlamaForCausalLM", false, false, 2048, 0},
    {"qwen2", "Qwen2ForCausalLM", true, false, 32768, 0},
    {"qwen3", "Qwen3ForCausalLM", false, true, 32768, 128},
};

const Family* family(const std::string& model_type) {
  for (const auto& f : kFamilies)
    if (model_type == f.model_type) return &f;
  return nullptr;
}

std::string show(const json& v) { return v.dump(-1, ' ', true, json::error_handler_t::replace); }

// A dimension: a positive integer no larger than 2^31 (so products of two fit int64 easily).
int64_t dim(const json& cfg, const char* key, const std::string& where, int64_t fallback = 0) {
  if (!cfg.contains(key) || cfg[key].is_null()) {
    if (fallback > 0) return fallback;
    input_error(where, std::string("config.json has no \"") + key + "\"",
                "a Hugging Face model's config.json names every dimension");
  }
  const json& v = cfg[key];
  if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > (int64_t{1} << 31))
    input_error(where + "." + key, "must be a positive integer, got " + show(v));
  return v.get<int64_t>();
}

double positive(const json& cfg, const char* key, const std::string& where, double fallback) {
  if (!cfg.contains(key) || cfg[key].is_null()) return fallback;
  const json& v = cfg[key];
  if (!v.is_number() || !(v.get<double>() > 0))
    input_error(where + "." + key, "must be a positive number, got " + show(v));
  return v.get<double>();
}

bool flag(const json& cfg, const char* key, const std::string& where, bool fallback) {
  if (!cfg.contains(key) || cfg[key].is_null()) return fallback;
  if (!cfg[key].is_boolean()) input_error(where + "." + key, "must be true or false, got " + show(cfg[key]));
  return cfg[key].get<bool>();
}

[[noreturn]] void unsupported(const std::string& where, const std::string& what) {
  input_error(where, what, "opd implements the plain Llama/Qwen2/Qwen3 decoder; such a model would "
                           "compute different logits, so it is not imported");
}

// RoPE: only the unscaled rotation (rope_type "default") is opd's.
void check_rope_kind(const json& cfg, const std::string& where) {
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (!cfg.contains(key) || cfg[key].is_null()) continue;
    const json& r = cfg[key];
    if (!r.is_object()) input_error(where + "." + key, "must be an object or null, got " + show(r));
    for (const char* type_key : {"rope_type", "type"})
      if (r.contains(type_key) && r[type_key] != "default")
        unsupported(where + "." + key, std::string("RoPE scaling ") + show(r[type_key]) +
                                           " is not implemented");
    if (std::string(key) == "rope_scaling" && !r.contains("rope_type") && !r.contains("type") &&
        !r.empty())
      unsupported(where + "." + key, "RoPE scaling " + show(r) + " is not implemented");
  }
}

}  // namespace

std::string hf_model_types() {
  std::string s;
  for (const auto& f : kFamilies) s += (s.empty() ? "" : ", ") + std::string(f.model_type);
  return s;
}

HfModelConfig hf_to_model_config(const json& cfg, const std::string& where) {
  if (!cfg.is_object()) input_error(where, "config.json must hold a JSON object");
  if (!cfg.contains("model_type") || !cfg["model_type"].is_string())
    input_error(where, "config.json has no \"model_type\"", "opd reads " + hf_model_types());
  HfModelConfig out;
  out.model_type = cfg["model_type"].get<std::string>();
  const Family* fam = family(out.model_type);
  if (!fam)
    input_error(where + ".model_type", "model_type \"" + out.model_type + "\" is not one opd implements",
                "opd reads " + hf_model_types());

  if (cfg.contains("hidden_act") && cfg["hidden_act"] != "silu")
    unsupported(where + ".hidden_act", "activation " + show(cfg["hidden_act"]) + " (opd's MLP is SwiGLU with silu)");
  check_rope_kind(cfg, where);
  if (flag(cfg, "use_sliding_window", where, false))
    unsupported(where + ".use_sliding_window", "sliding-window attention is not implemented");
  if (flag(cfg, "mlp_bias", where, false)) unsupported(where + ".mlp_bias", "MLP biases are not implemented");
  // Llama's and Qwen3's attention_bias adds a bias to o_proj too, which opd has not; Qwen2's q/k/v
  // biases are fixed by the architecture (its config has no such key).
  if (out.model_type != "qwen2" && flag(cfg, "attention_bias", where, false))
    unsupported(where + ".attention_bias", "attention biases (on q, k, v and o_proj) are not implemented");

  model::ModelConfig& c = out.config;
  c.d_model = dim(cfg, "hidden_size", where);
  c.n_layers = dim(cfg, "num_hidden_layers", where);
  if (c.n_layers > 65536)  // (each layer is a dozen named tensors; a hostile count must not blow up)
    input_error(where + ".num_hidden_layers", std::to_string(c.n_layers) + " layers is beyond any model");
  c.n_heads = dim(cfg, "num_attention_heads", where);
  c.n_kv_heads = dim(cfg, "num_key_value_heads", where, c.n_heads);
  c.head_dim = dim(cfg, "head_dim", where,
                   fam->default_head_dim > 0 ? fam->default_head_dim : c.d_model / c.n_heads);
  c.d_ff = dim(cfg, "intermediate_size", where);
  c.vocab_size = dim(cfg, "vocab_size", where);
  c.max_seq_len = dim(cfg, "max_position_embeddings", where, fam->default_max_positions);
  double theta = positive(cfg, "rope_theta", where, 10000.0);
  if (cfg.contains("rope_parameters") && cfg["rope_parameters"].is_object())
    theta = positive(cfg["rope_parameters"], "rope_theta", where + ".rope_parameters", theta);
  c.rope_theta = theta;
  c.norm_eps = positive(cfg, "rms_norm_eps", where, 1e-6);
  c.init_std = positive(cfg, "initializer_range", where, 0.02);
  c.tie_embeddings = flag(cfg, "tie_word_embeddings", where, false);
  c.qkv_bias = fam->qkv_bias;
  c.qk_norm = fam->qk_norm;
  if (c.d_model % c.n_heads != 0 && !(cfg.contains("head_dim") && !cfg["head_dim"].is_null()))
    input_error(where + ".num_attention_heads", "must divide hidden_size (or config.json gives head_dim)");
  c.validate(where);

  for (const char* key : {"torch_dtype", "dtype"})
    if (cfg.contains(key) && cfg[key].is_string()) out.torch_dtype = cfg[key].get<std::string>();
  return out;
}

std::string hf_model_type_of(const model::ModelConfig& c, const std::string& where) {
  for (const auto& f : kFamilies)
    if (f.qkv_bias == c.qkv_bias && f.qk_norm == c.qk_norm) return f.model_type;
  input_error(where, "a model with both q/k/v biases and QK-norm has no Hugging Face family",
              "export Llama-, Qwen2- (qkv_bias) or Qwen3-shaped (qk_norm) models");
}

json model_to_hf_config(const model::ModelConfig& c, const json& base, const std::string& torch_dtype,
                        const std::string& where) {
  const std::string type = hf_model_type_of(c, where);
  const Family* fam = family(type);
  json j = base.is_object() ? base : json::object();
  j["architectures"] = json::array({fam->architecture});
  j["model_type"] = type;
  j["hidden_size"] = c.d_model;
  j["intermediate_size"] = c.d_ff;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.n_kv_heads;
  j["head_dim"] = c.head_size();
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_seq_len;
  j["rope_theta"] = c.rope_theta;
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object())
    j["rope_parameters"]["rope_theta"] = c.rope_theta;
  j["rope_scaling"] = nullptr;
  j["rms_norm_eps"] = c.norm_eps;
  j["initializer_range"] = c.init_std;
  j["tie_word_embeddings"] = c.tie_embeddings;
  j["hidden_act"] = "silu";
  if (type != "qwen2") j["attention_bias"] = false;
  if (type == "llama") j["mlp_bias"] = false;
  if (type != "llama") j["use_sliding_window"] = false;
  if (!torch_dtype.empty()) {
    j["torch_dtype"] = torch_dtype;
    if (j.contains("dtype")) j["dtype"] = torch_dtype;  // newer transformers' spelling
  }
  return j;
}

}  // namespace opd::distill
