#include "model/param_specs.hpp"

namespace opd::model {

std::vector<ParamSpec> parameter_specs(const ModelConfig& cfg) {
  constexpr int kRows = 0, kCols = 1, kWhole = -1;
  const int64_t D = cfg.d_model, V = cfg.vocab_size, F = cfg.d_ff, E = cfg.head_size();
  const int64_t QS = cfg.q_size(), KS = cfg.kv_size();
  std::vector<ParamSpec> out;
  auto add = [&](std::string name, core::Shape shape, bool decay, int axis, int64_t layer) {
    out.push_back({std::move(name), std::move(shape), decay, axis, layer});
  };
  add("model.embed_tokens.weight", {V, D}, true, kRows, ParamSpec::kFirstStage);
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {D}, false, kWhole, l);
    add(p + "self_attn.q_proj.weight", {QS, D}, true, kRows, l);
    add(p + "self_attn.k_proj.weight", {KS, D}, true, kRows, l);
    add(p + "self_attn.v_proj.weight", {KS, D}, true, kRows, l);
    if (cfg.qkv_bias) {
      add(p + "self_attn.q_proj.bias", {QS}, false, kRows, l);
      add(p + "self_attn.k_proj.bias", {KS}, false, kRows, l);
      add(p + "self_attn.v_proj.bias", {KS}, false, kRows, l);
    }
    if (cfg.qk_norm) {
      add(p + "self_attn.q_norm.weight", {E}, false, kWhole, l);
      add(p + "self_attn.k_norm.weight", {E}, false, kWhole, l);
    }
    add(p + "self_attn.o_proj.weight", {D, QS}, true, kCols, l);
    add(p + "post_attention_layernorm.weight", {D}, false, kWhole, l);
    add(p + "mlp.gate_proj.weight", {F, D}, true, kRows, l);
    add(p + "mlp.up_proj.weight", {F, D}, true, kRows, l);
    add(p + "mlp.down_proj.weight", {D, F}, true, kCols, l);
  }
  add("model.norm.weight", {D}, false, kWhole, ParamSpec::kLastStage);
  if (!cfg.tie_embeddings) add("lm_head.weight", {V, D}, true, kRows, ParamSpec::kLastStage);
  return out;
}

}  // namespace opd::model
