// Per-step metrics of a stage as JSON lines (RUN/<stage>/metrics.jsonl). On resume the lines of
// steps after the checkpoint are dropped first, so a resumed run's file equals an uninterrupted
// run's.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

namespace opd::distill {

class MetricsLog {
 public:
  // Keeps the lines whose "step" is <= keep_through (all of them when keep_through < 0 is not
  // wanted: pass -1 to start a fresh file).
  MetricsLog(const std::string& path, int64_t keep_through);
  void write(const nlohmann::json& record);  // one line, flushed

 private:
  std::ofstream out_;
};

}  // namespace opd::distill
