#include "distill/stop_condition.hpp"

#include <csignal>
#include <cstdlib>

namespace opd::distill {

namespace {
volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_stop_signal(int sig) { g_signal = sig; }
}  // namespace

StopCondition::StopCondition(double walltime_s, double margin_s)
    : walltime_(walltime_s), margin_(margin_s) {
  if (const char* s = std::getenv("OPD_STOP_AT_STEP")) stop_at_step_ = std::atoll(s);
}

void StopCondition::install_signal_handlers() {
  std::signal(SIGUSR1, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}

bool StopCondition::should_stop(int64_t next_step) {
  if (g_signal != 0) {
    reason_ = g_signal == SIGUSR1 ? "SIGUSR1" : "SIGTERM";
    return true;
  }
  if (walltime_ > 0 && clock_.seconds() > walltime_ - margin_) {
    reason_ = "wall time";
    return true;
  }
  if (stop_at_step_ >= 0 && next_step == stop_at_step_) {
    reason_ = "OPD_STOP_AT_STEP";
    return true;
  }
  return false;
}

}  // namespace opd::distill
