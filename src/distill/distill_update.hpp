// One distillation update's forward and backward (DESIGN.md §3–§5): the student's logits at the
// response positions, formed a block of rows at a time, the per-token statistics and diagnostics,
// the advantages (teacher term, discount, baseline, outcome reward), the objective's gradient
// with respect to the logits, and its backward through the LM head and the model. Gradients are
// accumulated; the optimizer step is the caller's.
#pragma once

#include <map>
#include <string>

#include "comm/communicator.hpp"
#include "distill/objective_config.hpp"
#include "distill/rollout.hpp"
#include "distill/teacher.hpp"
#include "model/transformer.hpp"

namespace opd::distill {

// Metric name → value for the step (means over the batch's response positions unless noted).
using StepMetrics = std::map<std::string, double>;

// With data parallelism each rank passes its share of the batch; the normalisers (token and
// sequence counts) and every metric are reduced over `dp`, so the summed gradients and the
// metrics equal those of one rank holding the whole batch. Every rank must call it each step.
// The batch's sequences run as `micro_batches` groups (in the 1F1B order when the student is
// pipelined); the objective is computed on the last stage and the metrics reach every stage.
StepMetrics distill_backward(model::Transformer& student, const RolloutBatch& batch,
                             const ScoreReply& teacher, const DistillConfig& cfg,
                             const comm::Communicator& dp, int micro_batches = 1);

// The mean top-k overlap ratio of each response with the teacher (prompt selection); every
// pipeline stage calls it and gets the result.
std::vector<double> sequence_overlap(model::Transformer& student, const RolloutBatch& batch,
                                     const ScoreReply& teacher, const DistillConfig& cfg);

// The outcome advantage of each response: (r - mean) / (std + 1e-6) within each group of
// responses to the same example (0 for a group whose rewards are all equal).
std::vector<double> group_normalised_rewards(const std::vector<int32_t>& example,
                                             const std::vector<uint8_t>& correct);

}  // namespace opd::distill
