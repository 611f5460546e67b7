// Hugging Face config.json <-> opd's ModelConfig for the three decoder families opd implements:
// Llama (no biases, untied or tied), Qwen2 (q/k/v biases) and Qwen3 (RMSNorm over each head of q
// and k). Every config that would make opd compute something other than transformers does (RoPE
// scaling, sliding windows, other activations, o_proj or MLP biases) is refused by name, so an
// imported model either computes the same logits or does not import.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "model/model_config.hpp"

namespace opd::distill {

struct HfModelConfig {
  std::string model_type;   // "llama", "qwen2" or "qwen3"
  model::ModelConfig config;
  std::string torch_dtype;  // config.json's torch_dtype (or dtype), empty when absent
};

// The model_types opd reads, for messages: "llama, qwen2, qwen3".
std::string hf_model_types();

// From a parsed config.json; every problem is an Input error naming `where` and the key.
HfModelConfig hf_to_model_config(const nlohmann::json& cfg, const std::string& where);

// The model_type a ModelConfig is exported as (Input error for a combination no family has).
std::string hf_model_type_of(const model::ModelConfig& c, const std::string& where);

// config.json for `c`: `base` (the config.json an imported model came with, or null) keeps its
// other keys (token ids, generation settings), the architecture keys are opd's. torch_dtype:
// "bfloat16", "float16" or "float32"; empty keeps base's.
nlohmann::json model_to_hf_config(const model::ModelConfig& c, const nlohmann::json& base,
                                  const std::string& torch_dtype, const std::string& where);

}  // namespace opd::distill
