// tokenizer.json and encoder.json/vocab.bpe -> BpeSpec. Every unsupported feature is refused
// with its JSON location rather than silently encoding differently from the file's owner.
#include "data/bpe_hf_loader.hpp"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "core/error.hpp"
#include "core/sha256.hpp"
#include "data/unicode_props.hpp"

namespace opd::data {
namespace {

using json = nlohmann::json;
using Vocab = std::unordered_map<std::string, int32_t>;

json parse_json(const std::string& text, const std::string& path) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    input_error(path, std::string("not valid JSON: ") + e.what(), "is this a tokenizer file?");
  }
}

// A byte-level vocabulary string back to the bytes it stands for.
std::string byte_level_to_bytes(const std::string& s, const std::string& where) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    uint32_t cp;
    i += unicode::decode_utf8(s, i, cp);
    const int b = cp == unicode::kInvalid ? -1 : byte_from_unicode(cp);
    if (b < 0)
      input_error(where, "token '" + s + "' is not byte-level (a character stands for no byte)",
                  "only byte-level BPE vocabularies (GPT-2, Llama-3, Qwen) are supported");
    out += static_cast<char>(b);
  }
  return out;
}

void set_token(BpeSpec& spec, int64_t id, std::string bytes, const std::string& where) {
  // Real vocabularies stay far below 2^21 ids; the bound keeps a hostile file from making the
  // id table huge.
  if (id < 0 || id >= (int64_t{1} << 21))
    input_error(where, detail::concat("token id ", id, " is out of range"), "ids must be below 2^21");
  if (static_cast<std::size_t>(id) >= spec.tokens.size()) spec.tokens.resize(id + 1);
  spec.tokens[id] = std::move(bytes);
}

// Fills tokens from a token -> id object and returns the (byte-level string) -> id map.
Vocab read_vocab(BpeSpec& spec, const json& vocab, const std::string& where) {
  if (!vocab.is_object()) input_error(where, "must be an object of token -> id");
  Vocab v;
  v.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer()) input_error(where, "id of '" + it.key() + "' is not an integer");
    const int64_t id = it.value().get<int64_t>();
    set_token(spec, id, byte_level_to_bytes(it.key(), where), where);
    v.emplace(it.key(), static_cast<int32_t>(id));
  }
  return v;
}

void add_merge(BpeSpec& spec, const Vocab& v, const std::string& a, const std::string& b,
               const std::string& where) {
  auto find = [&](const std::string& s) {
    auto it = v.find(s);
    if (it == v.end())
      input_error(where, "merge '" + a + " " + b + "' uses '" + s + "', which is not in the vocabulary");
    return it->second;
  };
  spec.merges.push_back({find(a), find(b), find(a + b), static_cast<uint32_t>(spec.merges.size())});
}

// One merge as "a b" (the older layout) -> (a, b).
std::pair<std::string, std::string> split_merge(const std::string& line, const std::string& where) {
  const std::size_t sp = line.find(' ');
  if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos)
    input_error(where, "merge '" + line + "' is not two tokens separated by one space");
  return {line.substr(0, sp), line.substr(sp + 1)};
}

bool json_bool(const json& j, const char* key, bool def) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? def : it->get<bool>();
}
std::string json_type(const json& j) {
  auto it = j.find("type");
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

void read_normalizer(BpeSpec& spec, const json& n, const std::string& path) {
  if (n.is_null()) return;
  const std::string type = json_type(n);
  if (type == "NFC") {
    spec.nfc = true;
    return;
  }
  if (type == "Sequence" && n.contains("normalizers") && n["normalizers"].is_array()) {
    for (const json& e : n["normalizers"]) read_normalizer(spec, e, path);
    return;
  }
  input_error(path + ": normalizer", "normalizer type '" + type + "' is not supported",
              "opd supports no normalizer or NFC");
}

void read_pre_tokenizer(BpeSpec& spec, const json& p, const std::string& path) {
  const std::string where = path + ": pre_tokenizer";
  const std::string type = p.is_null() ? "" : json_type(p);
  if (type == "ByteLevel") {
    if (!json_bool(p, "use_regex", true))
      input_error(where, "ByteLevel without use_regex and without a Split before it",
                  "supported: ByteLevel(use_regex=true) or Sequence[Split, ByteLevel]");
    spec.pattern = gpt2_split_pattern();
    spec.add_prefix_space = json_bool(p, "add_prefix_space", false);
    return;
  }
  if (type == "Sequence" && p.contains("pretokenizers") && p["pretokenizers"].is_array() &&
      p["pretokenizers"].size() == 2) {
    const json& split = p["pretokenizers"][0];
    const json& bl = p["pretokenizers"][1];
    if (json_type(split) == "Split" && json_type(bl) == "ByteLevel" && !json_bool(bl, "use_regex", true)) {
      const json* rx = split.contains("pattern") ? &split["pattern"] : nullptr;
      if (!rx || !rx->is_object() || !rx->contains("Regex") || !(*rx)["Regex"].is_string())
        input_error(where, "Split needs a {\"Regex\": ...} pattern");
      const std::string regex = (*rx)["Regex"].get<std::string>();
      const auto pattern = split_pattern_from_hf_regex(regex);
      if (!pattern)
        input_error(where, "split regex " + regex + " is not one opd knows",
                    "supported: the GPT-2, cl100k/Llama-3, Qwen2/Qwen3 and o200k patterns");
      if (split.value("behavior", std::string("Isolated")) != "Isolated" || json_bool(split, "invert", false))
        input_error(where, "Split must have behavior Isolated and invert false");
      spec.pattern = *pattern;
      spec.add_prefix_space = json_bool(bl, "add_prefix_space", false);
      return;
    }
  }
  input_error(where, "pre_tokenizer '" + type + "' is not supported",
              "supported: ByteLevel(use_regex=true) or Sequence[Split(regex), ByteLevel(use_regex=false)]");
}

// A tokenizer_config.json value: "text", {"content": "text"} or null.
std::string config_token(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  return {};
}

// pad/bos/eos: from tokenizer_config.json when present, then the customary names; bos and pad
// fall back to eos (Qwen has no BOS; GPT-2 uses <|endoftext|> for all three).
void choose_specials(BpeSpec& spec, const std::string& path) {
  // A name from the config may be any token; the customary names count only as added tokens
  // (Qwen's vocabulary has an ordinary "<s>" that is no BOS).
  auto id_of = [&](const std::string& text, bool added_only) -> int32_t {
    if (text.empty()) return -1;
    for (const AddedToken& t : spec.added)
      if (t.content == text) return t.id;
    if (!added_only)
      for (std::size_t id = 0; id < spec.tokens.size(); ++id)
        if (spec.tokens[id] && *spec.tokens[id] == text) return static_cast<int32_t>(id);
    return -1;
  };
  auto first_of = [&](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (int32_t id = id_of(n, true); id >= 0) return id;
    return int32_t{-1};
  };
  const std::filesystem::path cfg_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  if (std::filesystem::exists(cfg_path)) {
    const std::string text = read_tokenizer_file(cfg_path.string());
    const json cfg = parse_json(text, cfg_path.string());
    spec.source += " config_sha256=" + core::sha256_hex(text);
    spec.eos = id_of(config_token(cfg, "eos_token"), false);
    spec.bos = id_of(config_token(cfg, "bos_token"), false);
    spec.pad = id_of(config_token(cfg, "pad_token"), false);
  }
  if (spec.eos < 0) spec.eos = first_of({"<|endoftext|>", "<|end_of_text|>", "</s>", "<|im_end|>"});
  if (spec.eos < 0)
    input_error(path, "no end-of-sequence token found",
                "put a tokenizer_config.json with eos_token beside the file");
  if (spec.bos < 0) spec.bos = first_of({"<|begin_of_text|>", "<s>", "<|endoftext|>"});
  if (spec.bos < 0) spec.bos = spec.eos;
  if (spec.pad < 0) spec.pad = first_of({"<|endoftext|>", "<pad>", "<|finetune_right_pad_id|>"});
  if (spec.pad < 0) spec.pad = spec.eos;
}

BpeSpec load_hf(const std::string& path);

}  // namespace

std::string read_tokenizer_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) input_error(path, "cannot read the tokenizer file", "check the path");
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

BpeSpec load_hf_tokenizer_json(const std::string& path) {
  try {
    return load_hf(path);
  } catch (const json::exception& e) {
    input_error(path, std::string("unexpected JSON content: ") + e.what(),
                "expected a Hugging Face tokenizer.json");
  }
}

namespace {

BpeSpec load_hf(const std::string& path) {
  const std::string text = read_tokenizer_file(path);
  const json j = parse_json(text, path);
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
    input_error(path, "no \"model\" object", "expected a Hugging Face tokenizer.json");
  BpeSpec spec;
  spec.kind = "hf";
  spec.source = "sha256=" + core::sha256_hex(text);
  const json& m = j["model"];
  const std::string where = path + ": model";
  if (const std::string t = json_type(m); !t.empty() && t != "BPE")
    input_error(where, "model type '" + t + "' is not supported", "opd reads byte-level BPE models");
  if (json_bool(m, "byte_fallback", false))
    input_error(where, "byte_fallback BPE (SentencePiece style) is not supported",
                "opd reads byte-level BPE models");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(k) && m[k].is_string() && !m[k].get<std::string>().empty())
      input_error(where, std::string(k) + " is not supported", "opd reads byte-level BPE models");
  if (m.contains("dropout") && m["dropout"].is_number() && m["dropout"].get<double>() > 0)
    input_error(where, "BPE dropout is not supported for encoding", "set dropout to null");
  spec.ignore_merges = json_bool(m, "ignore_merges", false);
  if (!m.contains("vocab") || !m.contains("merges") || !m["merges"].is_array())
    input_error(where, "needs \"vocab\" and a \"merges\" array");
  const Vocab vocab = read_vocab(spec, m["vocab"], where + ".vocab");
  spec.merges.reserve(m["merges"].size());
  for (const json& e : m["merges"]) {
    if (e.is_string()) {
      const auto [a, b] = split_merge(e.get<std::string>(), where + ".merges");
      add_merge(spec, vocab, a, b, where + ".merges");
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      add_merge(spec, vocab, e[0].get<std::string>(), e[1].get<std::string>(), where + ".merges");
    } else {
      input_error(where + ".merges", "a merge must be \"a b\" or [\"a\", \"b\"]");
    }
  }
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const json& a : j["added_tokens"]) {
      const std::string aw = path + ": added_tokens";
      if (!a.is_object() || !a.contains("id") || !a.contains("content") || !a["id"].is_number_integer() ||
          !a["content"].is_string())
        input_error(aw, "each added token needs an integer id and a string content");
      if (json_bool(a, "single_word", false))
        input_error(aw, "single_word added tokens are not supported");
      AddedToken t;
      const int64_t id = a["id"].get<int64_t>();
      set_token(spec, id, a["content"].get<std::string>(), aw);  // checks the range first
      t.id = static_cast<int32_t>(id);
      t.content = a["content"].get<std::string>();
      t.lstrip = json_bool(a, "lstrip", false);
      t.rstrip = json_bool(a, "rstrip", false);
      t.special = json_bool(a, "special", false);
      spec.added.push_back(std::move(t));
    }
  }
  read_normalizer(spec, j.contains("normalizer") ? j["normalizer"] : json(), path);
  read_pre_tokenizer(spec, j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json(), path);
  if (j.contains("decoder") && !j["decoder"].is_null() && json_type(j["decoder"]) != "ByteLevel")
    input_error(path + ": decoder", "decoder '" + json_type(j["decoder"]) + "' is not supported",
                "opd decodes byte-level BPE (decoder ByteLevel)");
  choose_specials(spec, path);
  return spec;
}

}  // namespace

BpeSpec load_gpt2_encoder(const std::string& encoder_json, const std::string& vocab_bpe) {
  const std::string enc_text = read_tokenizer_file(encoder_json);
  const std::string bpe_text = read_tokenizer_file(vocab_bpe);
  BpeSpec spec;
  spec.kind = "gpt2";
  spec.source = "sha256=" + core::sha256_hex(enc_text) + " merges_sha256=" + core::sha256_hex(bpe_text);
  const Vocab vocab = read_vocab(spec, parse_json(enc_text, encoder_json), encoder_json);
  std::istringstream lines(bpe_text);
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.starts_with("#version")) continue;
    const auto [a, b] = split_merge(line, vocab_bpe);
    add_merge(spec, vocab, a, b, vocab_bpe);
  }
  spec.pattern = gpt2_split_pattern();
  auto eot = vocab.find("<|endoftext|>");
  if (eot == vocab.end()) input_error(encoder_json, "no <|endoftext|> token", "expected GPT-2's encoder.json");
  spec.added.push_back({"<|endoftext|>", eot->second, false, false, true});
  spec.pad = spec.bos = spec.eos = eot->second;
  return spec;
}

}  // namespace opd::data
