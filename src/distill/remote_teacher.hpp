// Split placement (DESIGN.md §3): the teacher lives on its own ranks. RemoteTeacher is the
// student side of TeacherScorer — it sends each ScoreRequest to its teacher replica and receives
// the reply; serve_score_request is the teacher side. In Full mode the teacher sends its LM head
// once, then final hidden states per request, and the student ranks form the teacher's logits.
//
// With tensor or pipeline parallelism, a teacher replica's first rank receives each request and
// shares it with the replica (all of its ranks score it, the model being sharded), and the rank
// holding the results (the last stage's first tp rank) sends the reply; a student replica's first
// rank shares the reply with its tp group.
#pragma once

#include "comm/communicator.hpp"
#include "distill/teacher.hpp"

namespace opd::distill {

class RemoteTeacher final : public TeacherScorer {
 public:
  // teacher_rank / reply_rank: the teacher replica's first rank and the rank that replies (world
  // numbering); tp: this student rank's tensor-parallel group. Full mode: receives the teacher's
  // head first. The messages travel through host memory; the head and the hidden rows of each
  // reply are then moved to `device` (the student's), the per-row arrays stay on the host.
  RemoteTeacher(const comm::Communicator& world, int teacher_rank, int reply_rank,
                const comm::Communicator& tp, const model::ModelConfig& cfg, float temperature,
                bool full, core::Device device = core::Device::Host);
  ScoreReply score(const ScoreRequest& request) override;
  const model::ModelConfig& config() const override { return cfg_; }
  // score() in two halves, for overlapping the teacher's work with the student's (distill
  // overlap): the request leaves without waiting for the teacher to take it; the reply to the
  // oldest request sent is awaited later (pass that request: the reply echoes its mode and ids).
  void send_request(const ScoreRequest& request);
  ScoreReply receive_reply(const ScoreRequest& request);

 private:
  comm::Communicator world_, tp_;
  int teacher_rank_, reply_rank_;
  model::ModelConfig cfg_;
  float temperature_;
  core::Device device_;
  core::Tensor head_;
};

// Teacher side, every rank of a teacher replica: the whole head goes to `client` (Full mode,
// once, before any request), gathered over the last stage's tp group.
void send_teacher_head(LocalTeacher& teacher, const comm::Communicator& world, int client);
// Teacher side, every rank of a teacher replica (`replica`: its tp x pp ranks, the first one
// receiving): one request from `client` is scored and answered.
void serve_score_request(LocalTeacher& teacher, const comm::Communicator& world,
                         const comm::Communicator& replica, int client);

}  // namespace opd::distill
