// Teacher scoring behind one interface (DESIGN.md §3): a request names token sequences, the
// positions to score and the signal mode; the reply holds per-position arrays. The objectives
// see only the reply, so the teacher can move to other ranks (split placement) without touching
// them. LocalTeacher scores with a model held by this process (colocated placement).
#pragma once

#include <memory>

#include "backend/ops.hpp"
#include "core/tensor.hpp"
#include "model/transformer.hpp"

namespace opd::distill {

using backend::Signal;
using core::Tensor;

struct ScoreRequest {
  Tensor ids;          // [B, T] I32 prompt + response, right-padded
  Tensor rows;         // [M] I32 flat positions b * T + t scored; position t predicts ids[b, t + 1]
  Tensor targets;      // [M] I32 the token each scored position predicts (the sampled y)
  Signal mode = Signal::Sampled;
  Tensor student_ids;  // TopK: [M, k] I32 the student's top-k ids at each position (rollout)
};

struct ScoreReply {
  // Per scored position; the fields of the request's mode are filled (TeacherRows' contract).
  // Full mode fills the TopK fields too (the teacher's own top-k and log q at the student's
  // ids), and gives `hidden` [M, D_T] and `head` [V, D_T] instead of [M, V] logits: the logits are
  // formed block by block where they are used.
  backend::TeacherRows signal;
  Tensor lse;       // [M] teacher log-sum-exp (Sampled, TopK, Full)
  Tensor hidden, head;
  // The group `head` is sharded over (by vocabulary rows) when it is a tensor-parallel shard
  // (colocated placement); one rank: head is whole.
  parallel::TensorParallel head_tp;
  float temperature = 1.0f;
};

class TeacherScorer {
 public:
  virtual ~TeacherScorer() = default;
  virtual ScoreReply score(const ScoreRequest& request) = 0;
  virtual const model::ModelConfig& config() const = 0;
};

// With a pipelined model every stage calls score(); the reply is complete on the last stage only.
class LocalTeacher final : public TeacherScorer {
 public:
  // rows_per_block bounds the [rows, V] logits block formed in TopK mode.
  LocalTeacher(std::unique_ptr<model::Transformer> model, float temperature,
               int64_t vocab_chunk = 4096, int64_t rows_per_block = 64);
  ScoreReply score(const ScoreRequest& request) override;
  const model::ModelConfig& config() const override { return model_->config(); }
  model::Transformer& model() { return *model_; }

 private:
  // The final hidden states at the request's rows (last pipeline stage; every stage runs it).
  void forward_rows(const ScoreRequest& req, Tensor& hidden);

  std::unique_ptr<model::Transformer> model_;
  float temperature_;
  int64_t vocab_chunk_, rows_per_block_;
};

// Teacher logits (divided by the reply's temperature) for rows [r0, r1) of a Full-mode reply.
void teacher_logits_block(const ScoreReply& reply, int64_t r0, int64_t r1, Tensor& out);
// The same on the vocabulary columns `range` only (tensor parallelism): from the reply's head
// shard when it is sharded the same way (colocated), else from those rows of the whole head.
void teacher_logits_shard(const ScoreReply& reply, int64_t r0, int64_t r1,
                          const backend::VocabRange& range, Tensor& out);

}  // namespace opd::distill
