// Answer extraction and verification for the "Answer:" and "\boxed{}" markers.
#include "data/verifier.hpp"

#include <cctype>

#include "core/error.hpp"

namespace opd::data {

namespace {

constexpr std::string_view kAnswerTag = "Answer:";
constexpr std::string_view kBoxedTag = "\\boxed{";

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// The digits of s when it is all digits, or digits in thousands groups ("1,035", not "10,35").
std::optional<std::string> plain_digits(std::string_view s) {
  std::string digits;
  std::size_t group = 0, groups = 0;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == ',') {
      // The first group has 1..3 digits when commas are used, every later one exactly 3.
      const bool ok = groups == 0 ? group >= 1 : group == 3;
      if (!ok) return std::nullopt;
      if (i < s.size() && groups == 0 && group > 3) return std::nullopt;
      ++groups;
      group = 0;
    } else if (is_digit(s[i])) {
      digits += s[i];
      ++group;
    } else {
      return std::nullopt;
    }
  }
  return digits;
}

// Position of the last "Answer:" and its line's content, if any.
std::optional<std::pair<std::size_t, std::string_view>> last_answer_tag(std::string_view r) {
  const std::size_t pos = r.rfind(kAnswerTag);
  if (pos == std::string_view::npos) return std::nullopt;
  std::string_view rest = r.substr(pos + kAnswerTag.size());
  const std::size_t eol = rest.find('\n');
  if (eol != std::string_view::npos) rest = rest.substr(0, eol);
  return std::make_pair(pos, rest);
}

// Position of the last "\boxed{" and its balanced contents (nullopt contents when unterminated).
std::optional<std::pair<std::size_t, std::optional<std::string_view>>> last_boxed(
    std::string_view r) {
  const std::size_t pos = r.rfind(kBoxedTag);
  if (pos == std::string_view::npos) return std::nullopt;
  const std::size_t start = pos + kBoxedTag.size();
  int depth = 1;
  for (std::size_t i = start; i < r.size(); ++i) {
    if (r[i] == '{') ++depth;
    if (r[i] == '}' && --depth == 0) return std::make_pair(pos, r.substr(start, i - start));
  }
  return std::make_pair(pos, std::optional<std::string_view>{});
}

std::optional<std::string> finish(std::string_view raw) {
  std::string norm = normalize_answer(raw);
  if (norm.empty()) return std::nullopt;
  return norm;
}

}  // namespace

std::string normalize_answer(std::string_view text) {
  std::string_view s = trim(text);
  if (!s.empty() && s.back() == '.') s = trim(s.substr(0, s.size() - 1));
  std::string_view body = s;
  bool negative = false;
  if (!body.empty() && (body.front() == '+' || body.front() == '-')) {
    negative = body.front() == '-';
    body = trim(body.substr(1));  // "- 5" is read as -5 too
  }
  const auto digits = plain_digits(body);
  if (!digits) return std::string(s);
  const std::size_t nz = digits->find_first_not_of('0');
  if (nz == std::string::npos) return "0";  // "-0", "000"
  std::string out = negative ? std::string(1, '-') : std::string();
  out.append(*digits, nz, std::string::npos);  // (not "-" + s: GCC 12 warns falsely on that)
  return out;
}

std::optional<std::string> extract_answer(std::string_view response, std::string_view marker) {
  if (marker == "answer") {
    const auto tag = last_answer_tag(response);
    if (!tag) return std::nullopt;
    return finish(tag->second);
  }
  if (marker == "boxed") {
    const auto box = last_boxed(response);
    if (!box || !box->second) return std::nullopt;
    return finish(*box->second);
  }
  if (marker == "auto") {
    const auto tag = last_answer_tag(response);
    const auto box = last_boxed(response);
    if (box && (!tag || box->first > tag->first)) {
      if (!box->second) return std::nullopt;
      return finish(*box->second);
    }
    if (tag) return finish(tag->second);
    return std::nullopt;
  }
  input_error("answer marker", "unknown marker '" + std::string(marker) + "'",
              "allowed: answer, boxed, auto");
}

bool verify(std::string_view response, std::string_view reference, std::string_view marker) {
  const auto got = extract_answer(response, marker);
  return got && *got == normalize_answer(reference);
}

}  // namespace opd::data
