// Prompt templates: the text a model sees around a prompt ("Q: {prompt}\nA: "), set per stage so
// that a student can be prompted in its teacher's format (template alignment). A template
// "chat:NAME" is one of the named chat templates of chat_template.hpp (e.g. "chat:qwen3").
#pragma once

#include <string>

namespace opd::data {

constexpr const char* kPlainTemplate = "{prompt}";

// Input error naming `where` unless the template holds "{prompt}" exactly once, or is
// "chat:NAME" with a known NAME.
void validate_template(const std::string& templ, const std::string& where);
// The template with its "{prompt}" replaced by the prompt.
std::string apply_template(const std::string& templ, const std::string& prompt);

}  // namespace opd::data
