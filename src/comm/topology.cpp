#include "comm/topology.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace opd::comm {

Topology::Topology(ParallelConfig cfg, const Communicator& world, const std::string& where)
    : world_(world) {
  const int n = world.size();
  for (Layout* l : {&cfg.student, &cfg.teacher})
    if (l->dp == 0) l->dp = std::max(1, n / (l->tp * l->pp));
  auto str = [](const Layout& l) {
    return "tp " + std::to_string(l.tp) + " x pp " + std::to_string(l.pp) + " x dp " +
           std::to_string(l.dp);
  };
  if (cfg.placement == "split")
    input_error(where + ".placement", "split placement (separate teacher ranks) is not built yet",
                "use placement = \"colocated\"");
  if (cfg.student.size() != n)
    input_error(where + ".student",
                "the student layout " + str(cfg.student) + " needs " +
                    std::to_string(cfg.student.size()) + " ranks, the job runs on " +
                    std::to_string(n),
                "launch " + std::to_string(cfg.student.size()) + " ranks or change the layout");
  if (cfg.teacher.size() != n)
    input_error(where + ".teacher",
                "with colocated placement the teacher layout " + str(cfg.teacher) +
                    " must cover the same " + std::to_string(n) + " ranks as the student's",
                "make teacher.tp * teacher.pp * teacher.dp equal the world size");
  for (const auto* l : {&cfg.student, &cfg.teacher})
    if (l->tp > 1 || l->pp > 1)
      input_error(where + (l == &cfg.student ? ".student" : ".teacher"),
                  "tensor and pipeline parallelism are not built yet (only dp)",
                  "set tp = 1 and pp = 1; use dp for more ranks");
  layout_ = cfg.student;
  // tp fastest, then pp, then dp.
  const int r = world.rank();
  tp_rank_ = r % layout_.tp;
  pp_rank_ = (r / layout_.tp) % layout_.pp;
  dp_rank_ = r / (layout_.tp * layout_.pp);
  dp_ = world.split(pp_rank_ * layout_.tp + tp_rank_, dp_rank_);
}

std::string Topology::describe() const {
  return "tp" + std::to_string(layout_.tp) + ".pp" + std::to_string(layout_.pp) + ".dp" +
         std::to_string(layout_.dp);
}

}  // namespace opd::comm
