// The one-line progress report of a training stage: step, loss, learning rate, gradient norm,
// tokens/s and ETA, printed on rank 0.
#pragma once

#include <cstdint>
#include <string>

#include "core/timer.hpp"

namespace opd::distill {

class Progress {
 public:
  Progress(std::string stage, int64_t first_step, int64_t total_steps);
  void update(int64_t step, double loss, double lr, double grad_norm, double tokens_per_s);
  void print() const;

 private:
  std::string stage_;
  int64_t first_ = 0, total_ = 0, step_ = 0;
  double loss_ = 0, lr_ = 0, gnorm_ = 0, tps_ = 0;
  core::Stopwatch clock_;
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "42s"

// "<stage>: checkpoint <file>: 1020.5 MB written in 1.9 s (537 MB/s)" (verb: written | read).
void log_checkpoint_io(const std::string& stage, const std::string& path, const char* verb,
                       double seconds);

}  // namespace opd::distill
