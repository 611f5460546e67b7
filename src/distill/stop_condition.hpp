// When a stage must stop early and ask to be resubmitted (DESIGN.md §7): SIGUSR1 or SIGTERM
// (the handler only sets a flag), the job's wall time (minus a margin) running out, or the
// OPD_STOP_AT_STEP environment variable (a deterministic stand-in for a signal, used by the
// restart tests). Checked at step boundaries only, so a checkpoint is always consistent.
#pragma once

#include <cstdint>
#include <string>

#include "core/timer.hpp"

namespace opd::distill {

class StopCondition {
 public:
  // walltime <= 0: no wall-time limit.
  StopCondition(double walltime_s, double margin_s);
  // Installs the signal handlers (idempotent, process-wide).
  static void install_signal_handlers();
  // True when the stage should checkpoint and exit now, at the boundary before `next_step`;
  // reason() then says why.
  bool should_stop(int64_t next_step);
  const std::string& reason() const { return reason_; }

 private:
  double walltime_, margin_;
  int64_t stop_at_step_ = -1;
  core::Stopwatch clock_;
  std::string reason_;
};

// Exit status that asks the launcher (a Slurm restart chain) to resubmit the job.
constexpr int kExitResubmit = 3;

}  // namespace opd::distill
