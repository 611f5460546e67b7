// TokenSequence: one training or generation sequence (BOS + prompt + response + EOS) with its
// loss mask, built from text by a tokenizer.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "data/tokenizer.hpp"

namespace opd::data {

struct TokenSequence {
  std::vector<int32_t> tokens;
  // loss_mask[i] = 1 when tokens[i] is a prediction target (predicted from tokens[0..i-1]).
  std::vector<uint8_t> loss_mask;
  // Number of leading tokens that are prompt (BOS included): generation continues from here and
  // the response starts at tokens[prompt_len].
  int32_t prompt_len = 0;
};

// BOS + prompt + response + EOS. With response_only_loss the mask is 1 on the response tokens
// and the EOS (the model must learn where to stop); otherwise on every token after BOS (plain
// language modelling of the whole text).
TokenSequence build_sequence(const Tokenizer& tok, std::string_view prompt,
                             std::string_view response, bool response_only_loss);

// BOS + prompt with an all-zero mask: the start of a generation.
TokenSequence build_prompt(const Tokenizer& tok, std::string_view prompt);

}  // namespace opd::data
