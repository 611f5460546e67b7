#include "data/prompt_template.hpp"

#include "core/error.hpp"
#include "data/chat_template.hpp"

namespace opd::data {

namespace {
constexpr std::string_view kSlot = "{prompt}";
constexpr std::string_view kChat = "chat:";
bool is_chat(const std::string& templ) { return templ.rfind(kChat, 0) == 0; }
}

void validate_template(const std::string& templ, const std::string& where) {
  if (is_chat(templ)) {
    chat_template(templ.substr(kChat.size()), where);  // throws for an unknown name
    return;
  }
  const auto first = templ.find(kSlot);
  if (first == std::string::npos || templ.find(kSlot, first + 1) != std::string::npos)
    input_error(where, "template \"" + templ + "\" must contain {prompt} exactly once",
                "write e.g. template = \"Q: {prompt}\\nA: \"");
}

std::string apply_template(const std::string& templ, const std::string& prompt) {
  if (is_chat(templ)) return render_chat(chat_template(templ.substr(kChat.size()), "template"), prompt);
  const auto at = templ.find(kSlot);
  if (at == std::string::npos) return prompt;
  return templ.substr(0, at) + prompt + templ.substr(at + kSlot.size());
}

}  // namespace opd::data
