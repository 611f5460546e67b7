#include "distill/metrics_log.hpp"

#include <filesystem>
#include <sstream>
#include <vector>

#include "core/error.hpp"

namespace opd::distill {

MetricsLog::MetricsLog(const std::string& path, int64_t keep_through) {
  std::vector<std::string> kept;
  if (keep_through >= 0) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.contains("step") && j["step"].get<int64_t>() <= keep_through)
        kept.push_back(line);
    }
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream t(tmp, std::ios::trunc);
    for (const auto& l : kept) t << l << '\n';
    if (!t) input_error(path, "cannot write the metrics file", "check free space and permissions");
  }
  std::filesystem::rename(tmp, path);
  out_.open(path, std::ios::app);
}

void MetricsLog::write(const nlohmann::json& record) {
  out_ << record.dump() << '\n';
  out_.flush();
}

}  // namespace opd::distill
