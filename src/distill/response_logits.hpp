// The student's logits at the response positions of a rollout batch, a group of sequences at a
// time (the micro-batches of a pipelined update), and the per-token statistics over them.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/ops.hpp"
#include "distill/objective_config.hpp"
#include "distill/rollout.hpp"
#include "distill/teacher.hpp"
#include "model/transformer.hpp"

namespace opd::distill {

// Sequences [b0, b1) of a batch and their response rows [r0, r1) (a batch's rows are ordered by
// sequence, so a group's rows are contiguous).
struct RowGroup {
  int64_t b0 = 0, b1 = 0, r0 = 0, r1 = 0;
  int64_t rows() const { return r1 - r0; }
};
// The batch's sequences split into n groups of nearly equal size (n is capped at the batch).
std::vector<RowGroup> row_groups(const RolloutBatch& batch, int64_t n);

// A block of rows' logits: whole rows, or (tensor parallelism) this rank's vocabulary columns
// with the whole-vocabulary row quantities in `shard`.
struct LogitsBlock {
  Tensor z;                                   // [rows, V] or [rows, V / tp]
  backend::TeacherRows tr;
  const backend::ShardRows* shard = nullptr;  // set when z holds this rank's columns only
};

// The student's logits at a group's response positions (and the teacher's, in Full mode),
// formed rows_per_block rows at a time from the gathered final hidden states. Construction runs
// the student's forward over the group's sequences (every pipeline stage must take part); the
// rows exist where the head is (the last stage). With tensor parallelism no block of logits is
// ever gathered: each rank keeps its vocabulary columns (the student's, and in Full mode the
// teacher's on the same columns) and the row quantities are combined over the group
// (parallel/vocab_parallel).
class ResponseLogits {
 public:
  ResponseLogits(model::Transformer& student, const RolloutBatch& batch, const RowGroup& group,
                 const ScoreReply& teacher, const DistillConfig& cfg, bool keep_activations,
                 int slot = 0);
  bool has_rows() const { return student_.has_head(); }
  const RowGroup& group() const { return group_; }
  int64_t rows_per_block() const { return rows_per_block_; }

  // Student logits and the teacher's rows for the group's rows [a, b) (0 <= a < b <= rows()),
  // valid until the next block().
  void block(int64_t a, int64_t b, LogitsBlock& out);
  // Back through the head: d_z [b - a, columns of z] -> d_h_rows [b - a, D] (overwritten), and
  // the head's gradient.
  void block_backward(int64_t a, int64_t b, const Tensor& d_z, Tensor& d_h_rows);
  // Scratch for a block's d_z, shaped like its z.
  Tensor dz_scratch(int64_t rows);

  Tensor rows;  // [rows] flat positions within the group's [b1 - b0, T] ids (student's device)
  Tensor y;     // [rows] sampled tokens (host)
  Tensor h_r;   // [rows, D] the student's final hidden states there (student's device)

 private:
  const ScoreReply& teacher_;
  model::Transformer& student_;
  RowGroup group_;
  int64_t rows_per_block_;
  bool full_ = false, sharded_ = false;
  int64_t diag_k_ = 0;  // Full mode: the diagnostics' top-k lists
  double beta_ = 0.5;   // the JSD's, summed over the vocabulary with the rows
  Tensor z_block_, u_block_, dz_block_;
  backend::ShardRows shard_rows_;
};

// Per-token statistics and diagnostics of a group's rows (where has_rows()).
backend::TokenStats token_statistics(ResponseLogits& logits, const ScoreReply& teacher,
                                     int diag_k);

// The teacher's rows [r0, r1) of a reply's signal.
backend::TeacherRows slice_rows(const backend::TeacherRows& t, int64_t r0, int64_t r1);

}  // namespace opd::distill
