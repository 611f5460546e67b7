// Topology (DESIGN.md §6): the world's ranks split into the student and teacher groups
// (colocated: one group holds both models; split: disjoint groups), each group a dp × pp × tp grid
// with tp varying fastest, and the communicators of each axis.
#pragma once

#include <string>
#include <vector>

#include "comm/communicator.hpp"

namespace opd::comm {

struct Layout {
  int tp = 1, pp = 1, dp = 1;
  int size() const { return tp * pp * dp; }
};

struct ParallelConfig {
  Layout student, teacher;
  std::string placement = "colocated";  // colocated | split
  int zero = 0;                         // 1: shard AdamW state over data-parallel ranks
  int micro_batches = 0;                // per update and rank; 0: one per pipeline stage
};

enum class Role { Student, Teacher, Both };

class Topology {
 public:
  // Validates the configuration against the world size and the parts built so far (Input
  // errors naming the key and the fix); `where` prefixes messages ("job.toml: [parallel]").
  // A layout's dp = 0 means: every rank the other axes leave (world size / (tp * pp)).
  Topology(ParallelConfig cfg, const Communicator& world, const std::string& where);

  Role role() const { return role_; }
  const Layout& layout() const { return layout_; }  // of this rank's group
  const Layout& student_layout() const { return student_; }
  const Layout& teacher_layout() const { return teacher_; }
  int dp_rank() const { return dp_rank_; }
  int pp_rank() const { return pp_rank_; }
  int tp_rank() const { return tp_rank_; }
  const Communicator& world() const { return world_; }
  const Communicator& dp() const { return dp_; }  // the ranks holding the same shard
  const Communicator& tp() const { return tp_; }  // the ranks sharing one model replica's layer
  const Communicator& pp() const { return pp_; }  // the pipeline stages of this rank's tp slice
  // The tp x pp ranks of this rank's model replica (they write one checkpoint together).
  const Communicator& replica() const { return replica_; }
  // Every rank of this rank's group (student or teacher; the world when colocated).
  const Communicator& group() const { return group_; }
  bool is_root() const { return world_.rank() == 0; }
  // Split placement: the student group is world ranks [0, S), the teacher group [S, S + T).
  bool split() const { return split_; }
  int student_ranks() const { return student_ranks_; }
  int teacher_root() const { return student_ranks_; }
  // The teacher rank that scores for student dp rank s (the first rank of a teacher replica), and
  // the student replicas (their first ranks) this rank's teacher replica serves.
  int teacher_of(int student_dp_rank) const;
  // The rank of that teacher replica that sends the replies (its last stage's first tp rank).
  int teacher_reply_rank(int student_dp_rank) const;
  std::vector<int> clients() const;
  std::string describe() const;  // "tp1.pp1.dp2"

 private:
  Role role_ = Role::Both;
  bool split_ = false;
  int student_ranks_ = 1, teacher_ranks_ = 0;
  Layout layout_, student_, teacher_;
  int dp_rank_ = 0, pp_rank_ = 0, tp_rank_ = 0;
  Communicator world_, dp_, tp_, pp_, replica_, group_;
};

}  // namespace opd::comm
