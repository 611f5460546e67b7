// PhaseTimers and ScopedPhase: see timer.hpp.
#include "core/timer.hpp"

#include "core/error.hpp"

namespace opd::core {

using Clock = std::chrono::steady_clock;

void PhaseTimers::start(const std::string& name) {
  const auto [it, inserted] = running_.emplace(name, Clock::now());
  OPD_CHECK(inserted, "phase '", name, "' started while running");
  total_.try_emplace(name, 0.0);  // a phase appears in take() even if it has not ended yet
}

void PhaseTimers::stop(const std::string& name) {
  const auto now = Clock::now();
  auto it = running_.find(name);
  OPD_CHECK(it != running_.end(), "phase '", name, "' stopped while not running");
  total_[name] += std::chrono::duration<double>(now - it->second).count();
  running_.erase(it);
}

double PhaseTimers::seconds(const std::string& name) const {
  double s = 0;
  if (auto it = total_.find(name); it != total_.end()) s = it->second;
  if (auto it = running_.find(name); it != running_.end())
    s += std::chrono::duration<double>(Clock::now() - it->second).count();
  return s;
}

std::map<std::string, double> PhaseTimers::take() {
  const auto now = Clock::now();
  for (auto& [name, since] : running_) {
    total_[name] += std::chrono::duration<double>(now - since).count();
    since = now;
  }
  std::map<std::string, double> out;
  out.swap(total_);
  return out;
}

ScopedPhase::ScopedPhase(PhaseTimers& timers, std::string name)
    : timers_(timers), name_(std::move(name)) {
  timers_.start(name_);
}

ScopedPhase::~ScopedPhase() { timers_.stop(name_); }

}  // namespace opd::core
