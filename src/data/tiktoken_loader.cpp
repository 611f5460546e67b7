// tiktoken rank files: base64 decoding, the encoding's specials and pattern, and merges derived
// from ranks.
#include "data/tiktoken_loader.hpp"

#include <filesystem>
#include <unordered_map>

#include "core/error.hpp"
#include "data/bpe_hf_loader.hpp"
#include "core/sha256.hpp"

namespace opd::data {
namespace {

struct Encoding {
  const char* name;
  std::size_t ranks;  // lines in the published file
  SplitPattern (*pattern)();
  std::vector<std::pair<const char*, int32_t>> specials;
};

const std::vector<Encoding>& encodings() {
  static const std::vector<Encoding> e = {
      {"r50k_base", 50256, gpt2_split_pattern, {{"<|endoftext|>", 50256}}},
      {"gpt2", 50256, gpt2_split_pattern, {{"<|endoftext|>", 50256}}},
      {"p50k_base", 50280, gpt2_split_pattern, {{"<|endoftext|>", 50256}}},
      {"p50k_edit", 50280, gpt2_split_pattern,
       {{"<|endoftext|>", 50256}, {"<|fim_prefix|>", 50281}, {"<|fim_middle|>", 50282},
        {"<|fim_suffix|>", 50283}}},
      {"cl100k_base", 100256, cl100k_split_pattern,
       {{"<|endoftext|>", 100257}, {"<|fim_prefix|>", 100258}, {"<|fim_middle|>", 100259},
        {"<|fim_suffix|>", 100260}, {"<|endofprompt|>", 100276}}},
      {"o200k_base", 199998, o200k_split_pattern,
       {{"<|endoftext|>", 199999}, {"<|endofprompt|>", 200018}}},
  };
  return e;
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

bool base64_decode(std::string_view in, std::string& out) {
  out.clear();
  uint32_t acc = 0;
  int bits = 0;
  std::size_t i = 0;
  for (; i < in.size() && in[i] != '='; ++i) {
    const int v = base64_value(in[i]);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  for (; i < in.size(); ++i)
    if (in[i] != '=') return false;
  return !out.empty();
}

}  // namespace

BpeSpec load_tiktoken(const std::string& path) {
  const std::string text = read_tokenizer_file(path);
  BpeSpec spec;
  spec.kind = "tiktoken";
  std::unordered_map<std::string, int32_t> by_bytes;
  std::size_t line_no = 0, ranks = 0;
  std::string bytes;
  for (std::size_t pos = 0; pos < text.size();) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const std::size_t sp = line.find(' ');
    int64_t rank = -1;
    if (sp != std::string_view::npos && sp + 1 < line.size()) {
      rank = 0;
      for (char c : line.substr(sp + 1)) {
        if (c < '0' || c > '9' || rank >= (int64_t{1} << 21)) {  // as tokenizer.json ids
          rank = -1;
          break;
        }
        rank = rank * 10 + (c - '0');
      }
      if (rank >= (int64_t{1} << 21)) rank = -1;
    }
    if (rank < 0 || !base64_decode(line.substr(0, sp), bytes))
      input_error(detail::concat(path, ":", line_no), "not a '<base64 token> <rank>' line",
                  "expected a tiktoken rank file such as cl100k_base.tiktoken");
    if (static_cast<std::size_t>(rank) >= spec.tokens.size()) spec.tokens.resize(rank + 1);
    if (spec.tokens[rank] || !by_bytes.emplace(bytes, static_cast<int32_t>(rank)).second)
      input_error(detail::concat(path, ":", line_no), "duplicate rank or token",
                  "the file is damaged");
    spec.tokens[rank] = bytes;
    ++ranks;
  }
  const std::string stem = std::filesystem::path(path).stem().string();
  const Encoding* enc = nullptr;
  for (const Encoding& e : encodings())
    if (stem == e.name) enc = &e;
  for (const Encoding& e : encodings())
    if (!enc && ranks == e.ranks) enc = &e;
  if (!enc)
    input_error(path, detail::concat("cannot tell which encoding this rank file (", ranks,
                                     " ranks) belongs to"),
                "name it r50k_base, p50k_base, p50k_edit, cl100k_base or o200k_base.tiktoken");
  spec.pattern = enc->pattern();
  spec.ignore_merges = true;  // tiktoken looks the whole piece up before merging
  for (const auto& [content, id] : enc->specials) {
    if (static_cast<std::size_t>(id) >= spec.tokens.size()) spec.tokens.resize(id + 1);
    if (spec.tokens[id]) input_error(path, detail::concat("special id ", id, " is also a rank"));
    spec.tokens[id] = content;
    spec.added.push_back({content, id, false, false, true});
  }
  spec.pad = spec.bos = spec.eos = enc->specials.front().second;
  spec.source = std::string("encoding=") + enc->name + " sha256=" + core::sha256_hex(text);
  // Merging parts a and b has the rank of the token a+b. Listing every split of every token
  // whose halves are both tokens gives exactly those pairs.
  for (std::size_t id = 0; id < spec.tokens.size(); ++id) {
    if (!spec.tokens[id] || spec.tokens[id]->size() < 2) continue;
    if (by_bytes.find(*spec.tokens[id]) == by_bytes.end()) continue;  // a special
    const std::string& t = *spec.tokens[id];
    for (std::size_t k = 1; k < t.size(); ++k) {
      auto a = by_bytes.find(t.substr(0, k));
      if (a == by_bytes.end()) continue;
      auto b = by_bytes.find(t.substr(k));
      if (b == by_bytes.end()) continue;
      spec.merges.push_back({a->second, b->second, static_cast<int32_t>(id), static_cast<uint32_t>(id)});
    }
  }
  return spec;
}

}  // namespace opd::data
