// tiktoken rank files ("<base64 token> <rank>" per line) into a BpeSpec, with the split pattern
// and special tokens of the OpenAI encoding the file belongs to (those are not in the file).
#pragma once

#include <string>

#include "data/bpe_tokenizer.hpp"

namespace opd::data {

// The encoding is named by the file's stem when it is one of r50k_base, gpt2, p50k_base,
// p50k_edit, cl100k_base, o200k_base, else recognised by the number of ranks (50256 r50k, 50280
// p50k, 100256 cl100k, 199998 o200k); anything else is an Input error. The pre-token merge rule
// is the concatenation's rank, derived here as merges over every split of every token.
BpeSpec load_tiktoken(const std::string& path);

}  // namespace opd::data
