// Stop texts (job files, command line) as token ids: each must be exactly one token of the
// tokenizer, since generation stops on tokens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.hpp"

namespace opd::data {

// Input error naming `where` and the text when a text is not exactly one token.
std::vector<int32_t> stop_token_ids(const Tokenizer& tok, const std::vector<std::string>& texts,
                                    const std::string& where);

}  // namespace opd::data
