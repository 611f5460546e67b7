// Batched autoregressive generation with a KV cache: prefill of prompts of different lengths,
// then one decode step per token; temperature / top-k / top-p sampling, EOS and stop tokens,
// max new tokens. Each sequence draws its uniforms from its own Philox stream
// (seed, Sampling, stream_id), so its tokens do not depend on the rest of the batch.
#pragma once

#include <cstdint>
#include <vector>

#include "model/transformer.hpp"

namespace opd::model {

struct SamplingConfig {
  float temperature = 1.0f;  // <= 0: greedy
  int top_k = 0;             // <= 0: no top-k filter
  float top_p = 1.0f;        // >= 1: no nucleus filter
  int64_t max_new_tokens = 64;
  std::vector<int32_t> stop_tokens;  // besides EOS
  int record_topk = 0;  // > 0: keep the top-k ids of the model's own distribution per token
};

struct Generation {
  std::vector<int32_t> tokens;    // generated tokens, including the EOS/stop token if one came
  std::vector<float> logprobs;    // log-probability of each token under the sampler
  bool stopped = false;           // ended by EOS or a stop token (else by a length limit)
  // With record_topk = k: the k most likely ids (descending, temperature 1) at each generated
  // position, tokens.size() * k values.
  std::vector<int32_t> topk_ids;
};

// prompts: token ids, each non-empty and shorter than the model's context (Input error if not).
// stream_ids: one per prompt (e.g. the example index times samples-per-prompt plus sample).
// vocab_limit: tokens are drawn from the ids [0, vocab_limit) only — pass the tokenizer's
// vocabulary size, since an imported model's embedding may have padded, untrained rows past it
// that the tokenizer cannot decode; 0: the model's whole vocabulary (Input error if larger).
std::vector<Generation> generate(Transformer& model,
                                 const std::vector<std::vector<int32_t>>& prompts,
                                 const SamplingConfig& cfg, uint64_t seed,
                                 const std::vector<uint64_t>& stream_ids, int32_t eos_id,
                                 int64_t vocab_limit = 0);

}  // namespace opd::model
