// Split placement (DESIGN.md §3): the teacher lives on its own ranks. RemoteTeacher is the
// student side of TeacherScorer — it sends each ScoreRequest to its teacher rank and receives
// the reply; serve_score_request is the teacher side. In Full mode the teacher sends its LM head
// once, then final hidden states per request, and the student ranks form the teacher's logits.
#pragma once

#include "comm/communicator.hpp"
#include "distill/teacher.hpp"

namespace opd::distill {

class RemoteTeacher final : public TeacherScorer {
 public:
  // Full mode: receives the teacher's head from teacher_rank first.
  RemoteTeacher(const comm::Communicator& world, int teacher_rank, const model::ModelConfig& cfg,
                float temperature, bool full);
  ScoreReply score(const ScoreRequest& request) override;
  const model::ModelConfig& config() const override { return cfg_; }

 private:
  comm::Communicator world_;
  int teacher_rank_;
  model::ModelConfig cfg_;
  float temperature_;
  core::Tensor head_;
};

// Teacher side: sends the head to `client` (Full mode, once, before any request).
void send_teacher_head(LocalTeacher& teacher, const comm::Communicator& world, int client);
// Teacher side: receives one request from `client`, scores it and sends the reply.
void serve_score_request(LocalTeacher& teacher, const comm::Communicator& world, int client);

}  // namespace opd::distill
