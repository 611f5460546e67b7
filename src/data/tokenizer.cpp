// make_tokenizer: the tokenizer factory (one place that knows every kind).
#include "data/tokenizer.hpp"

#include "core/error.hpp"
#include "data/char_tokenizer.hpp"

namespace opd::data {

const std::vector<std::string>& tokenizer_kinds() {
  static const std::vector<std::string> kinds{"char"};
  return kinds;
}

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& kind) {
  if (kind == "char") return std::make_unique<CharTokenizer>();
  std::string known;
  for (const auto& k : tokenizer_kinds()) known += (known.empty() ? "" : ", ") + k;
  input_error("tokenizer", "unknown tokenizer kind '" + kind + "'", "known kinds: " + known);
}

}  // namespace opd::data
