#include "comm/topology.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace opd::comm {

Topology::Topology(ParallelConfig cfg, const Communicator& world, const std::string& where)
    : world_(world) {
  const int n = world.size();
  const bool split = cfg.placement == "split";
  if (split && (cfg.student.dp == 0 || cfg.teacher.dp == 0))
    input_error(where, "split placement needs the student's and the teacher's dp set",
                "write e.g. student = {dp = 2} and teacher = {dp = 1}");
  for (Layout* l : {&cfg.student, &cfg.teacher})
    if (l->dp == 0) l->dp = std::max(1, n / (l->tp * l->pp));
  auto str = [](const Layout& l) {
    return "tp " + std::to_string(l.tp) + " x pp " + std::to_string(l.pp) + " x dp " +
           std::to_string(l.dp);
  };
  const int needed = split ? cfg.student.size() + cfg.teacher.size() : cfg.student.size();
  if (needed != n)
    input_error(where + ".student",
                "the student layout " + str(cfg.student) +
                    (split ? " and the teacher layout " + str(cfg.teacher) : std::string()) +
                    (split ? " need " : " needs ") + std::to_string(needed) +
                    " ranks, the job runs on " +
                    std::to_string(n),
                "launch " + std::to_string(needed) + " ranks or change the layout");
  if (!split && cfg.teacher.size() != n)
    input_error(where + ".teacher",
                "with colocated placement the teacher layout " + str(cfg.teacher) +
                    " must cover the same " + std::to_string(n) + " ranks as the student's",
                "make teacher.tp * teacher.pp * teacher.dp equal the world size");
  if (split && cfg.student.pp > 1)
    input_error(where + ".student",
                "with split placement the student cannot be pipelined yet (its replies arrive at "
                "its first rank)",
                "set student.pp = 1 (the teacher may use pp), or use colocated placement");
  if (!split && (cfg.teacher.tp != cfg.student.tp || cfg.teacher.pp != cfg.student.pp))
    input_error(where + ".teacher",
                "with colocated placement both models share every rank's tensor-parallel group, so "
                "the teacher's tp and pp (" + std::to_string(cfg.teacher.tp) + ", " +
                    std::to_string(cfg.teacher.pp) + ") must equal the student's (" +
                    std::to_string(cfg.student.tp) + ", " + std::to_string(cfg.student.pp) + ")",
                "use the same tp and pp for both, or placement = \"split\" for different layouts");
  split_ = split;
  student_ = cfg.student;
  teacher_ = cfg.teacher;
  student_ranks_ = cfg.student.size();
  teacher_ranks_ = split ? cfg.teacher.size() : 0;
  const int r = world.rank();
  role_ = !split ? Role::Both : r < student_ranks_ ? Role::Student : Role::Teacher;
  layout_ = role_ == Role::Teacher ? cfg.teacher : cfg.student;
  const int local = role_ == Role::Teacher ? r - student_ranks_ : r;
  // tp fastest, then pp, then dp.
  tp_rank_ = local % layout_.tp;
  pp_rank_ = (local / layout_.tp) % layout_.pp;
  dp_rank_ = local / (layout_.tp * layout_.pp);
  const int group = role_ == Role::Teacher ? 1 : 0;
  dp_ = world.split((group << 20) + pp_rank_ * layout_.tp + tp_rank_, dp_rank_);
  tp_ = world.split((group << 20) + dp_rank_ * layout_.pp + pp_rank_, tp_rank_);
  pp_ = world.split((group << 20) + dp_rank_ * layout_.tp + tp_rank_, pp_rank_);
  replica_ = world.split((group << 20) + dp_rank_, pp_rank_ * layout_.tp + tp_rank_);
  group_ = world.split(group, local);
}

int Topology::teacher_of(int student_dp_rank) const {
  // The first rank (tp and pp rank 0) of a teacher replica; replicas serve students round-robin.
  return student_ranks_ + (student_dp_rank % teacher_.dp) * teacher_.tp * teacher_.pp;
}

int Topology::teacher_reply_rank(int student_dp_rank) const {
  return teacher_of(student_dp_rank) + (teacher_.pp - 1) * teacher_.tp;
}

std::vector<int> Topology::clients() const {
  // The student replicas (by their first rank) served by this rank's teacher replica.
  const int mine = student_ranks_ + dp_rank_ * teacher_.tp * teacher_.pp;
  std::vector<int> out;
  for (int d = 0; d < student_.dp; ++d)
    if (teacher_of(d) == mine) out.push_back(d * student_.tp * student_.pp);
  return out;
}

std::string Topology::describe() const {
  return "tp" + std::to_string(layout_.tp) + ".pp" + std::to_string(layout_.pp) + ".dp" +
         std::to_string(layout_.dp);
}

}  // namespace opd::comm
