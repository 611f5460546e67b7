// Sequence building: special tokens around encoded prompt and response, and the loss mask.
#include "data/sequence.hpp"

namespace opd::data {

TokenSequence build_prompt(const Tokenizer& tok, std::string_view prompt) {
  TokenSequence seq;
  seq.tokens.push_back(tok.bos_id());
  const auto p = tok.encode(prompt);
  seq.tokens.insert(seq.tokens.end(), p.begin(), p.end());
  seq.loss_mask.assign(seq.tokens.size(), 0);
  seq.prompt_len = static_cast<int32_t>(seq.tokens.size());
  return seq;
}

TokenSequence build_sequence(const Tokenizer& tok, std::string_view prompt,
                             std::string_view response, bool response_only_loss) {
  TokenSequence seq = build_prompt(tok, prompt);
  const auto r = tok.encode(response);
  seq.tokens.insert(seq.tokens.end(), r.begin(), r.end());
  seq.tokens.push_back(tok.eos_id());
  const std::size_t first_target =
      response_only_loss ? static_cast<std::size_t>(seq.prompt_len) : 1;
  seq.loss_mask.assign(seq.tokens.size(), 0);
  for (std::size_t i = first_target; i < seq.tokens.size(); ++i) seq.loss_mask[i] = 1;
  return seq;
}

}  // namespace opd::data
