// Sampling k responses to each of a list of prompt texts in fixed-size batches — what evaluation
// and teacher_generate share. Response (example i, sample s) draws from the sampling stream
// i * k + s, so its tokens do not depend on the batch size.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/tokenizer.hpp"
#include "model/generator.hpp"

namespace opd::distill {

// Calls on_response(example, sample, generation) for every response, in order. `prompts` may be
// a slice of a larger list starting at example `first_example`: stream ids (and the example
// index passed back) count from the start of the whole list.
void sample_responses(model::Transformer& m, const data::Tokenizer& tok,
                      const std::vector<std::string>& prompts, int64_t samples,
                      const model::SamplingConfig& sampling, uint64_t seed, int64_t batch_size,
                      const std::function<void(int64_t, int64_t, const model::Generation&)>& on_response,
                      int64_t first_example = 0);

// Input error naming `where` when the prompt text does not leave room to generate in `context`.
void check_prompt_fits(const data::Tokenizer& tok, const std::string& text, int64_t context,
                       const std::string& where);

}  // namespace opd::distill
