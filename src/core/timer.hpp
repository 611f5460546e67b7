// Wall-clock timing: Stopwatch (steady_clock, seconds as double) and PhaseTimers, which
// accumulate the time spent in named phases (rollout, scoring, backward...) between reports.
#pragma once

#include <chrono>
#include <map>
#include <string>

namespace opd::core {

class Stopwatch {
 public:
  Stopwatch() { reset(); }
  void reset() { start_ = std::chrono::steady_clock::now(); }
  double seconds() const {  // since construction or the last reset()
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// Accumulated seconds per phase name. Phases may nest or overlap when their names differ;
// starting a running phase or stopping a stopped one is a bug (internal error). Not thread-safe:
// one instance per thread.
class PhaseTimers {
 public:
  void start(const std::string& name);
  void stop(const std::string& name);
  bool running(const std::string& name) const { return running_.count(name) != 0; }
  // Seconds so far (finished intervals plus the running one), without resetting.
  double seconds(const std::string& name) const;
  // All totals since the last take(), then reset to zero. A running phase contributes its time
  // up to now and keeps running from now, so no time is counted twice or lost.
  std::map<std::string, double> take();

 private:
  std::map<std::string, double> total_;
  std::map<std::string, std::chrono::steady_clock::time_point> running_;
};

// RAII: start(name) now, stop(name) at scope exit (also on exceptions).
class ScopedPhase {
 public:
  ScopedPhase(PhaseTimers& timers, std::string name);
  ~ScopedPhase();
  ScopedPhase(const ScopedPhase&) = delete;
  ScopedPhase& operator=(const ScopedPhase&) = delete;

 private:
  PhaseTimers& timers_;
  std::string name_;
};

}  // namespace opd::core
