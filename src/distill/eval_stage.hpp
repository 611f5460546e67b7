// The `eval` stage: accuracy of a model on a verifiable prompt set — greedy, or avg@k over k
// sampled responses per prompt — written to RUN/<stage>/results.json with sample generations.
#pragma once

#include <vector>

#include "data/dataset.hpp"
#include "data/sequence.hpp"
#include "comm/communicator.hpp"
#include "comm/topology.hpp"
#include "distill/stage.hpp"
#include "model/transformer.hpp"

namespace opd::distill {

struct EvalResult {
  int64_t examples = 0, samples = 0, correct = 0;
  double accuracy = 0;  // avg@k: mean over examples of the fraction of correct samples
  double mean_response_tokens = 0;
  double truncated = 0;  // fraction of samples that hit the length limit
};

// Evaluates `m` on `examples` (their `answer` field is the reference). `first_lines` receives up
// to that many decoded samples (of this rank's share) for inspection. With a data-parallel
// communicator each rank evaluates a contiguous share of the examples and the counts are summed;
// every response keeps its stream, so the result does not depend on the number of ranks.
EvalResult evaluate(model::Transformer& m, const data::Tokenizer& tok,
                    const std::vector<data::Example>& examples, const EvalConfig& cfg,
                    uint64_t seed, std::vector<std::string>* first_lines = nullptr,
                    std::size_t max_lines = 0, const comm::Communicator* dp = nullptr);

class EvalStage final : public Stage {
 public:
  EvalStage(const JobConfig& job, const StageConfig& stage, const data::Tokenizer& tokenizer,
            const comm::Topology& topo);
  void prepare() override;
  StageOutcome run(StopCondition& stop) override;
  // Data parallel: each rank evaluates a share of the examples.
  bool data_parallel() const override { return true; }

 private:
  const JobConfig& job_;
  const StageConfig& cfg_;
  const data::Tokenizer& tok_;
  const comm::Topology& topo_;
  std::vector<data::Example> examples_;
  std::vector<int32_t> stop_tokens_;
};

}  // namespace opd::distill
