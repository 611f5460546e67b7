// Reading a job file into distill::JobConfig: TOML (with --set overrides) through the strict
// ConfigTable reader, then cross-field checks (stage names, model references).
#pragma once

#include <string>
#include <vector>

#include "distill/stage_config.hpp"

namespace opd::app {

distill::JobConfig load_job(const std::string& path, const std::vector<std::string>& overrides);
distill::JobConfig parse_job(const std::string& toml_text, const std::string& source_name,
                             const std::vector<std::string>& overrides);

}  // namespace opd::app
