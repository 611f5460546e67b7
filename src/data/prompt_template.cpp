#include "data/prompt_template.hpp"

#include "core/error.hpp"

namespace opd::data {

namespace {
constexpr std::string_view kSlot = "{prompt}";
}

void validate_template(const std::string& templ, const std::string& where) {
  const auto first = templ.find(kSlot);
  if (first == std::string::npos || templ.find(kSlot, first + 1) != std::string::npos)
    input_error(where, "template \"" + templ + "\" must contain {prompt} exactly once",
                "write e.g. template = \"Q: {prompt}\\nA: \"");
}

std::string apply_template(const std::string& templ, const std::string& prompt) {
  const auto at = templ.find(kSlot);
  if (at == std::string::npos) return prompt;
  return templ.substr(0, at) + prompt + templ.substr(at + kSlot.size());
}

}  // namespace opd::data
