#include "distill/progress.hpp"

#include <cstdio>
#include <filesystem>

#include "core/log.hpp"

namespace opd::distill {

Progress::Progress(std::string stage, int64_t first_step, int64_t total_steps)
    : stage_(std::move(stage)), first_(first_step), total_(total_steps), step_(first_step) {}

void Progress::update(int64_t step, double loss, double lr, double grad_norm,
                      double tokens_per_s) {
  step_ = step;
  loss_ = loss;
  lr_ = lr;
  gnorm_ = grad_norm;
  tps_ = tokens_per_s;
}

void Progress::print() const {
  const double done = static_cast<double>(step_ - first_);
  const double eta = done > 0 ? clock_.seconds() / done * static_cast<double>(total_ - step_) : 0;
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s step %lld/%lld loss %.4f lr %.2e gnorm %.3f tok/s %.0f eta %s",
                stage_.c_str(), static_cast<long long>(step_), static_cast<long long>(total_), loss_,
                lr_, gnorm_, tps_, format_duration(eta).c_str());
  core::log::info(buf);
}

void log_checkpoint_io(const std::string& stage, const std::string& path, const char* verb,
                       double seconds) {
  std::error_code ec;
  const double mb = static_cast<double>(std::filesystem::file_size(path, ec)) / 1e6;
  char buf[160];
  std::snprintf(buf, sizeof buf, "%.1f MB %s in %.2f s (%.0f MB/s)", ec ? 0.0 : mb, verb, seconds,
                seconds > 0 && !ec ? mb / seconds : 0.0);
  core::log::info(stage, ": checkpoint ", std::filesystem::path(path).filename().string(), ": ", buf);
}

std::string format_duration(double s) {
  char buf[32];
  const long t = static_cast<long>(s + 0.5);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

}  // namespace opd::distill
