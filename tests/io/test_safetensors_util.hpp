// tests/io/test_safetensors_util.hpp: an independent, minimal safetensors writer for tests (its
// header is assembled as text by hand, not with opd's writer or nlohmann), and random Hugging
// Face model folders (config.json + weights, one file or shards with an index) built with it.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace opd::testing::st {

struct RawTensor {
  std::string name, dtype;  // "F32", "F16", "BF16", ...
  std::vector<int64_t> shape;
  std::string bytes;  // little-endian data
};

inline std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// The header text for `tensors` laid out back to back in the given order.
inline std::string header_json(const std::vector<RawTensor>& tensors, const std::string& metadata_json = "") {
  std::string h = "{";
  uint64_t off = 0;
  bool first = true;
  if (!metadata_json.empty()) {
    h += "\"__metadata__\":" + metadata_json;
    first = false;
  }
  for (const auto& t : tensors) {
    if (!first) h += ",";
    first = false;
    h += "\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
    for (std::size_t i = 0; i < t.shape.size(); ++i) h += (i ? "," : "") + std::to_string(t.shape[i]);
    h += "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + t.bytes.size()) + "]}";
    off += t.bytes.size();
  }
  return h + "}";
}

// A whole file: length, header (padded with `pad` spaces), data.
inline std::string file_bytes(const std::string& header, const std::vector<RawTensor>& tensors, std::size_t pad = 0) {
  std::string out = le64(header.size() + pad) + header + std::string(pad, ' ');
  for (const auto& t : tensors) out += t.bytes;
  return out;
}
inline std::string file_bytes(const std::vector<RawTensor>& tensors, const std::string& metadata_json = "") {
  return file_bytes(header_json(tensors, metadata_json), tensors);
}

inline void write_bytes(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
}

inline int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Random values of a dtype as raw bytes: normal(0, scale) floats, rounded to F16/BF16 by taking
// the value's bits through the test's own conversion (truncation for BF16, the compiler's
// _Float16 for F16), so the stored bits are arbitrary valid values of that format.
inline std::string random_bytes(const std::string& dtype, int64_t n, std::mt19937_64& rng, float scale, float mean = 0) {
  std::normal_distribution<float> dist(mean, scale);
  std::string out;
  for (int64_t i = 0; i < n; ++i) {
    const float v = dist(rng);
    if (dtype == "F32") {
      out.append(reinterpret_cast<const char*>(&v), 4);
    } else if (dtype == "BF16") {
      uint32_t u;
      std::memcpy(&u, &v, 4);
      const auto b = static_cast<uint16_t>(u >> 16);
      out.append(reinterpret_cast<const char*>(&b), 2);
    } else {  // F16
      const _Float16 h = static_cast<_Float16>(v);
      out.append(reinterpret_cast<const char*>(&h), 2);
    }
  }
  return out;
}

// The shape of a small random model of a Hugging Face family.
struct ModelShape {
  std::string model_type = "qwen2";  // llama, qwen2, qwen3
  int64_t vocab = 67, hidden = 32, layers = 2, heads = 4, kv_heads = 2, head_dim = 8, ff = 48;
  bool tie = true;
  double rope_theta = 1000000.0, eps = 1e-6;
  int64_t max_pos = 128;
  std::string dtype = "BF16";
  bool qkv_bias() const { return model_type == "qwen2"; }
  bool qk_norm() const { return model_type == "qwen3"; }
};

inline std::string config_json(const ModelShape& m) {
  const char* arch = m.model_type == "llama" ? "LlamaForCausalLM"
                     : m.model_type == "qwen2" ? "Qwen2ForCausalLM" : "Qwen3ForCausalLM";
  const char* torch = m.dtype == "F32" ? "float32" : m.dtype == "F16" ? "float16" : "bfloat16";
  char eps[64], theta[64];
  std::snprintf(eps, sizeof eps, "%.17g", m.eps);
  std::snprintf(theta, sizeof theta, "%.17g", m.rope_theta);
  return std::string("{\n") + "  \"architectures\": [\"" + arch + "\"],\n" +
         "  \"model_type\": \"" + m.model_type + "\",\n" +
         "  \"hidden_size\": " + std::to_string(m.hidden) + ",\n" +
         "  \"intermediate_size\": " + std::to_string(m.ff) + ",\n" +
         "  \"num_hidden_layers\": " + std::to_string(m.layers) + ",\n" +
         "  \"num_attention_heads\": " + std::to_string(m.heads) + ",\n" +
         "  \"num_key_value_heads\": " + std::to_string(m.kv_heads) + ",\n" +
         "  \"head_dim\": " + std::to_string(m.head_dim) + ",\n" +
         "  \"vocab_size\": " + std::to_string(m.vocab) + ",\n" +
         "  \"max_position_embeddings\": " + std::to_string(m.max_pos) + ",\n" +
         "  \"rope_theta\": " + theta + ",\n" +
         "  \"rms_norm_eps\": " + eps + ",\n" +
         "  \"tie_word_embeddings\": " + (m.tie ? "true" : "false") + ",\n" +
         "  \"hidden_act\": \"silu\",\n" +
         "  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n" +
         "  \"torch_dtype\": \"" + torch + "\"\n}\n";
}

// Every weight of the model, in a Hugging Face-like order, random: matrices N(0, 0.1), norm gains
// N(1, 0.1), biases N(0, 0.1). `with_tied_head` stores lm_head.weight as a copy of the embedding
// (some tied checkpoints do).
inline std::vector<RawTensor> random_weights(const ModelShape& m, uint64_t seed, bool with_tied_head = false) {
  std::mt19937_64 rng(seed);
  std::vector<RawTensor> out;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale, float mean = 0) {
    out.push_back({name, m.dtype, shape, random_bytes(m.dtype, numel(shape), rng, scale, mean)});
  };
  const int64_t qs = m.heads * m.head_dim, ks = m.kv_heads * m.head_dim;
  add("model.embed_tokens.weight", {m.vocab, m.hidden}, 0.5f);
  for (int64_t l = 0; l < m.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {m.hidden}, 0.1f, 1.0f);
    add(p + "self_attn.q_proj.weight", {qs, m.hidden}, 0.15f);
    add(p + "self_attn.k_proj.weight", {ks, m.hidden}, 0.15f);
    add(p + "self_attn.v_proj.weight", {ks, m.hidden}, 0.15f);
    if (m.qkv_bias()) {
      add(p + "self_attn.q_proj.bias", {qs}, 0.1f);
      add(p + "self_attn.k_proj.bias", {ks}, 0.1f);
      add(p + "self_attn.v_proj.bias", {ks}, 0.1f);
    }
    if (m.qk_norm()) {
      add(p + "self_attn.q_norm.weight", {m.head_dim}, 0.1f, 1.0f);
      add(p + "self_attn.k_norm.weight", {m.head_dim}, 0.1f, 1.0f);
    }
    add(p + "self_attn.o_proj.weight", {m.hidden, qs}, 0.15f);
    add(p + "post_attention_layernorm.weight", {m.hidden}, 0.1f, 1.0f);
    add(p + "mlp.gate_proj.weight", {m.ff, m.hidden}, 0.15f);
    add(p + "mlp.up_proj.weight", {m.ff, m.hidden}, 0.15f);
    add(p + "mlp.down_proj.weight", {m.hidden, m.ff}, 0.15f);
  }
  add("model.norm.weight", {m.hidden}, 0.1f, 1.0f);
  if (!m.tie) add("lm_head.weight", {m.vocab, m.hidden}, 0.15f);
  else if (with_tied_head) out.push_back({"lm_head.weight", m.dtype, {m.vocab, m.hidden}, out[0].bytes});
  return out;
}

// Writes config.json and the weights into `dir`: one model.safetensors (shards == 1) or `shards`
// files with model.safetensors.index.json (tensors dealt out round-robin, so every shard's data
// is interleaved in the model's order).
inline void write_folder(const std::filesystem::path& dir, const ModelShape& m,
                         const std::vector<RawTensor>& weights, int shards = 1) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << config_json(m);
  if (shards <= 1) {
    write_bytes(dir / "model.safetensors", file_bytes(weights, "{\"format\":\"pt\"}"));
    return;
  }
  std::vector<std::vector<RawTensor>> parts(static_cast<std::size_t>(shards));
  for (std::size_t i = 0; i < weights.size(); ++i) parts[i % parts.size()].push_back(weights[i]);
  std::string index = "{\"metadata\":{\"total_size\":0},\"weight_map\":{";
  bool first = true;
  for (std::size_t k = 0; k < parts.size(); ++k) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05d.safetensors", k + 1, shards);
    write_bytes(dir / name, file_bytes(parts[k], "{\"format\":\"pt\"}"));
    for (const auto& t : parts[k]) {
      index += std::string(first ? "" : ",") + "\"" + t.name + "\":\"" + name + "\"";
      first = false;
    }
  }
  std::ofstream(dir / "model.safetensors.index.json") << index << "}}";
}

}  // namespace opd::testing::st
