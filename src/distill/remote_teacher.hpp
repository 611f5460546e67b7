// Split placement (DESIGN.md §3): the teacher lives on its own ranks. RemoteTeacher is the
// student side of TeacherScorer — it sends each ScoreRequest to its teacher replica and receives
// the reply; serve_score_request is the teacher side. In Full mode the teacher sends its LM head
// once, then final hidden states per request, and the student ranks form the teacher's logits.
//
// With tensor parallelism on either side, only the first rank of a replica talks to the other
// side: a teacher replica's first rank shares each request with its tp group (all of them score
// it, the model being sharded) and sends the reply; a student replica's first rank shares the
// reply with its tp group.
#pragma once

#include "comm/communicator.hpp"
#include "distill/teacher.hpp"

namespace opd::distill {

class RemoteTeacher final : public TeacherScorer {
 public:
  // teacher_rank: the first rank of the teacher replica (world numbering); tp: this student
  // rank's tensor-parallel group. Full mode: receives the teacher's head first.
  RemoteTeacher(const comm::Communicator& world, int teacher_rank, const comm::Communicator& tp,
                const model::ModelConfig& cfg, float temperature, bool full);
  ScoreReply score(const ScoreRequest& request) override;
  const model::ModelConfig& config() const override { return cfg_; }

 private:
  comm::Communicator world_, tp_;
  int teacher_rank_;
  model::ModelConfig cfg_;
  float temperature_;
  core::Tensor head_;
};

// Teacher side, every rank of a teacher replica (tp: its tensor-parallel group): the whole head
// goes to `client` (Full mode, once, before any request).
void send_teacher_head(LocalTeacher& teacher, const comm::Communicator& world,
                       const comm::Communicator& tp, int client);
// Teacher side, every rank of a teacher replica: one request from `client` is scored and
// answered.
void serve_score_request(LocalTeacher& teacher, const comm::Communicator& world,
                         const comm::Communicator& tp, int client);

}  // namespace opd::distill
