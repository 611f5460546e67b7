// A batch of responses to distil on: the student's own samples (on-policy rollouts) or fixed
// responses from a dataset (off-policy batches for GKD mixing and SFT cold starts), laid out as
// token sequences with the response positions to score, and each response's verdict.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "data/dataset.hpp"
#include "data/tokenizer.hpp"
#include "model/generator.hpp"
#include "model/transformer.hpp"

namespace opd::distill {

struct RolloutBatch {
  core::Tensor ids;                 // [B, T] I32 BOS + prompt + response, right-padded
  std::vector<int32_t> rows;        // M flat positions b * T + t whose next token is a response token
  std::vector<int32_t> targets;     // M: that response token (y)
  std::vector<float> logmu;         // M: its log-probability under the sampler (0 off-policy)
  std::vector<int32_t> topk;        // M * k: the student's top-k ids at the position (rollouts)
  int k = 0;
  std::vector<int32_t> row_seq;     // M: the sequence of each row
  std::vector<int32_t> row_index;   // M: its index within the response
  std::vector<int32_t> response_len;  // B
  std::vector<int32_t> prompt_len;    // B: BOS + prompt tokens
  std::vector<int32_t> example;       // B: index of the prompt's example
  std::vector<uint8_t> correct;       // B: the verifier's verdict on the response
  std::vector<uint8_t> truncated;     // B: the response hit a length limit
  std::vector<std::string> responses; // B: decoded text
  bool on_policy = true;

  int64_t batch() const { return ids.dim(0); }
  int64_t seq_len() const { return ids.dim(1); }
  int64_t num_rows() const { return static_cast<int64_t>(rows.size()); }
};

// n samples from the student for each example index; stream ids start at stream_base.
RolloutBatch make_rollouts(model::Transformer& student, const data::Tokenizer& tok,
                           const std::vector<data::Example>& examples,
                           const std::vector<int64_t>& chosen, int64_t samples,
                           const model::SamplingConfig& sampling, uint64_t seed,
                           uint64_t stream_base, const std::string& marker);

// A batch as JSON and back (the batch in flight of an overlapped run goes into checkpoints).
std::string rollout_to_json(const RolloutBatch& batch);
RolloutBatch rollout_from_json(const std::string& text);

// The dataset's own responses for the chosen examples (truncated to the context).
RolloutBatch make_fixed_batch(const data::Tokenizer& tok,
                              const std::vector<data::Example>& examples,
                              const std::vector<int64_t>& chosen, int64_t context,
                              const std::string& marker);

// The same responses behind other prompt texts (the teacher's template): token ids [B, T'] and,
// for every row of the batch, its position in that layout.
struct Relayout {
  core::Tensor ids;
  std::vector<int32_t> rows;
};
Relayout relayout(const RolloutBatch& batch, const data::Tokenizer& tok,
                  const std::vector<std::string>& prompts);

// The student's top-k ids (temperature 1) at every scored row of a batch, from a scoring pass:
// for batches that were not sampled by the student (fixed data), in top-k signal mode.
std::vector<int32_t> student_topk(model::Transformer& student, const RolloutBatch& batch, int k,
                                  int64_t rows_per_block);

}  // namespace opd::distill
