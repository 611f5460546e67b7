#include "data/chat_template.hpp"

#include "core/error.hpp"

namespace opd::data {

const std::vector<ChatTemplate>& chat_templates() {
  static const std::vector<ChatTemplate> all = {
      {"plain", "the prompt as it is, no markup", "", "", ""},
      // ChatML with Qwen2.5's default system message (its template inserts it when the
      // conversation has none).
      {"qwen2.5", "Qwen2.5 chat (ChatML, default system message)",
       "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
       "assistant.<|im_end|>\n<|im_start|>user\n",
       "<|im_end|>\n<|im_start|>assistant\n", "<|im_end|>"},
      // Qwen3: no default system message; with thinking on, the model opens its own <think>.
      {"qwen3", "Qwen3 chat, thinking on (the model writes <think>...</think> itself)",
       "<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n", "<|im_end|>"},
      // enable_thinking=False: the template closes an empty thinking block for the model.
      {"qwen3-nothink", "Qwen3 chat, thinking off (an empty <think></think> block is given)",
       "<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
       "<|im_end|>"},
      {"llama3", "Llama-3 instruct chat (header ids; BOS added by the tokenizer)",
       "<|start_header_id|>user<|end_header_id|>\n\n",
       "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"},
  };
  return all;
}

const ChatTemplate& chat_template(const std::string& name, const std::string& where) {
  std::string names;
  for (const ChatTemplate& t : chat_templates()) {
    if (name == t.name) return t;
    names += std::string(names.empty() ? "" : ", ") + t.name;
  }
  input_error(where, "unknown chat template '" + name + "'", "use chat:NAME with NAME one of " + names);
}

std::string render_chat(const ChatTemplate& t, const std::string& prompt) {
  return std::string(t.before) + prompt + t.after;
}

}  // namespace opd::data
