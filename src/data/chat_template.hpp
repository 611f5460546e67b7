// Chat templates: the turn markup that chat-tuned models of the Qwen and Llama families were
// trained with, as named C++ renderings (never a Jinja interpreter), so that a teacher and a
// student given the same name see the same tokens around a user prompt. A stage selects one with
// template = "chat:NAME" (or teacher_template = "chat:NAME"); prompt_template.hpp dispatches here.
//
// The renderings follow the published tokenizer_config.json templates for a single user turn with
// the generation prompt appended. opd adds the tokenizer's BOS itself, so Llama-3's
// <|begin_of_text|> is not part of the text.
#pragma once

#include <string>
#include <vector>

namespace opd::data {

struct ChatTemplate {
  const char* name;
  const char* description;
  const char* before;       // the text before the user's prompt
  const char* after;        // the text after it, up to where the assistant's answer begins
  const char* end_of_turn;  // what ends the assistant's turn (a stop text for generation)
};

// Every template, in a fixed order: plain, qwen2.5, qwen3, qwen3-nothink, llama3.
const std::vector<ChatTemplate>& chat_templates();
// The template of that name; an Input error naming `where` and listing the names otherwise.
const ChatTemplate& chat_template(const std::string& name, const std::string& where);
// The text a model sees for one user turn and the start of its answer.
std::string render_chat(const ChatTemplate& t, const std::string& prompt);

}  // namespace opd::data
