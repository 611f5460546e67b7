#include "distill/sample_responses.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "data/sequence.hpp"

namespace opd::distill {

void sample_responses(model::Transformer& m, const data::Tokenizer& tok,
                      const std::vector<std::string>& prompts, int64_t samples,
                      const model::SamplingConfig& sampling, uint64_t seed, int64_t batch_size,
                      const std::function<void(int64_t, int64_t, const model::Generation&)>& on_response,
                      int64_t first_example) {
  const int64_t items = static_cast<int64_t>(prompts.size()) * samples;
  for (int64_t start = 0; start < items; start += batch_size) {
    const int64_t end = std::min(items, start + batch_size);
    std::vector<std::vector<int32_t>> ids;
    std::vector<uint64_t> streams;
    for (int64_t i = start; i < end; ++i) {
      ids.push_back(data::build_prompt(tok, prompts[static_cast<std::size_t>(i / samples)]).tokens);
      streams.push_back(static_cast<uint64_t>(first_example * samples + i));
    }
    const auto gens = model::generate(m, ids, sampling, seed, streams, tok.eos_id(), tok.vocab_size());
    for (int64_t i = start; i < end; ++i)
      on_response(first_example + i / samples, i % samples, gens[static_cast<std::size_t>(i - start)]);
  }
}

void check_prompt_fits(const data::Tokenizer& tok, const std::string& text, int64_t context,
                       const std::string& where) {
  const auto len = static_cast<int64_t>(data::build_prompt(tok, text).tokens.size());
  if (len >= context)
    input_error(where, "prompt has " + std::to_string(len) + " tokens, the model's context is " +
                           std::to_string(context),
                "shorten the prompt or use a model with a larger max_seq_len");
}

}  // namespace opd::distill
