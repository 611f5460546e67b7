// Strict JSONL and text loaders: every problem in a user's file is reported with its line.
#include "data/dataset.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"

namespace opd::data {

namespace {

constexpr const char* kJsonlHint =
    "each line must be one JSON object such as {\"prompt\": \"2+2=\", \"answer\": \"4\"}";

const char* json_type(const nlohmann::json& j) { return j.type_name(); }

// nlohmann's messages start with "[json.exception.parse_error.101] parse error at line 1, ...";
// the tag and the line-1 position (each record is one line) add nothing for the user.
std::string parse_message(const std::string& what) {
  std::string m = what;
  const std::size_t tag = m.find("] ");
  if (m.rfind("[json.exception", 0) == 0 && tag != std::string::npos) m = m.substr(tag + 2);
  return m;
}

std::string optional_string(const nlohmann::json& obj, const char* key, bool allow_integer,
                            const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (allow_integer && it->is_number_integer()) return it->dump();
  input_error(where,
              detail::concat("field \"", key, "\" must be a string",
                             allow_integer ? " or an integer" : "", ", not ", json_type(*it)),
              kJsonlHint);
}

}  // namespace

std::vector<Example> load_jsonl(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) input_error(path, "cannot open the dataset file", "check the path");
  std::vector<Example> out;
  std::string line;
  int64_t lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF files
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = detail::concat(path, ":", lineno);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {  // syntax, and numbers out of range
      input_error(where, "malformed JSON: " + parse_message(e.what()), kJsonlHint);
    }
    if (!j.is_object())
      input_error(where, detail::concat("expected a JSON object, found ", json_type(j)),
                  kJsonlHint);
    const auto prompt = j.find("prompt");
    if (prompt == j.end()) input_error(where, "missing field \"prompt\"", kJsonlHint);
    if (!prompt->is_string())
      input_error(where,
                  detail::concat("field \"prompt\" must be a string, not ", json_type(*prompt)),
                  kJsonlHint);
    Example ex;
    ex.prompt = prompt->get<std::string>();
    ex.response = optional_string(j, "response", false, where);
    // Integer answers are accepted because they are unambiguous and common in arithmetic sets.
    ex.answer = optional_string(j, "answer", true, where);
    out.push_back(std::move(ex));
  }
  if (f.bad()) input_error(path, "read error");
  if (out.empty()) input_error(path, "the dataset has no examples", kJsonlHint);
  return out;
}

std::string load_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) input_error(path, "cannot open the text file", "check the path");
  std::ostringstream os;
  os << f.rdbuf();
  if (f.bad()) input_error(path, "read error");
  return os.str();
}

}  // namespace opd::data
