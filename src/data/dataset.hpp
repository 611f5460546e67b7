// Dataset files: strict JSONL loading of prompt/response/answer examples, and whole text files.
#pragma once

#include <string>
#include <vector>

namespace opd::data {

struct Example {
  std::string prompt;
  std::string response;  // empty when the file has none (prompt-only sets for rollouts)
  std::string answer;    // reference answer for the verifier; empty when the file has none
};

// One JSON object per line: "prompt" (string, required), "response" (string, optional),
// "answer" (string or integer, optional); other fields are ignored (datasets often carry
// metadata). Blank lines are skipped. A missing file, malformed JSON, a missing prompt, a wrong
// type or a file with no examples are Input errors whose where is "path:LINE".
std::vector<Example> load_jsonl(const std::string& path);

// The whole file as bytes; a missing or unreadable file is an Input error.
std::string load_text(const std::string& path);

}  // namespace opd::data
