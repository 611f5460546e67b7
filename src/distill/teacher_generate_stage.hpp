// The `teacher_generate` stage: the teacher answers a prompt set; responses without the answer
// marker, with a wrong answer (optional) or with degenerate repetition are rejected; the rest
// are written to RUN/<stage>/samples.jsonl, which an `sft` stage (data = "@stage") trains on —
// the off-policy cold start of the OPD literature.
#pragma once

#include <vector>

#include "data/dataset.hpp"
#include "distill/stage.hpp"
#include "model/generator.hpp"

namespace opd::distill {

// True when some n-gram of `ngram` tokens occurs more than `max_count` times in `tokens`.
bool degenerate_repetition(const std::vector<int32_t>& tokens, int ngram, int max_count);

class TeacherGenerateStage final : public Stage {
 public:
  TeacherGenerateStage(const JobConfig& job, const StageConfig& stage,
                       const data::Tokenizer& tokenizer);
  void prepare() override;
  StageOutcome run(StopCondition& stop) override;

 private:
  // Why a response is rejected (nullptr: kept).
  const char* rejection(const model::Generation& g, const std::string& text,
                        const std::string& answer) const;

  const JobConfig& job_;
  const StageConfig& cfg_;
  const data::Tokenizer& tok_;
  std::vector<data::Example> prompts_;
  std::vector<int32_t> stop_tokens_;  // the stage's `stop` texts (each one token), besides EOS
};

}  // namespace opd::distill
