#include "data/stop_tokens.hpp"

#include "core/error.hpp"

namespace opd::data {

std::vector<int32_t> stop_token_ids(const Tokenizer& tok, const std::vector<std::string>& texts,
                                    const std::string& where) {
  std::vector<int32_t> ids;
  for (const auto& t : texts) {
    const std::vector<int32_t> enc = tok.encode(t);
    if (enc.size() != 1)
      input_error(where, "stop text \"" + t + "\" is " + std::to_string(enc.size()) +
                             " tokens of the " + tok.name() + " tokenizer",
                  "give texts that are single tokens");
    ids.push_back(enc[0]);
  }
  return ids;
}

}  // namespace opd::data
