// make_tokenizer: the tokenizer factory (one place that knows every kind).
#include "data/tokenizer.hpp"

#include "core/error.hpp"
#include "data/bpe_hf_loader.hpp"
#include "data/char_tokenizer.hpp"
#include "data/tiktoken_loader.hpp"

namespace opd::data {

const std::vector<std::string>& tokenizer_kinds() {
  static const std::vector<std::string> kinds{"char", "hf", "tiktoken"};
  return kinds;
}

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& spec) {
  const std::size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  const std::string path = colon == std::string::npos ? "" : spec.substr(colon + 1);
  if (kind == "char" && colon == std::string::npos) return std::make_unique<CharTokenizer>();
  if ((kind == "hf" || kind == "tiktoken") && path.empty())
    input_error("tokenizer", "kind '" + kind + "' needs a file",
                "write \"" + kind + ":PATH\" (in a job: [tokenizer] path = \"...\")");
  if (kind == "hf") return std::make_unique<BpeTokenizer>(load_hf_tokenizer_json(path));
  if (kind == "tiktoken") return std::make_unique<BpeTokenizer>(load_tiktoken(path));
  std::string known;
  for (const auto& k : tokenizer_kinds()) known += (known.empty() ? "" : ", ") + k;
  input_error("tokenizer", "unknown tokenizer kind '" + kind + "'", "known kinds: " + known);
}

}  // namespace opd::data
