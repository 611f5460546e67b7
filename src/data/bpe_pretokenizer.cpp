// Hand-written matchers for the split-regex families (see bpe_pretokenizer.hpp). Each function
// tries the regex's alternatives in order at code point i and returns where the first that
// matches ends, resolving greedy quantifiers the way a backtracking engine would.
#include "data/bpe_pretokenizer.hpp"

#include "data/unicode_props.hpp"

namespace opd::data {
namespace {

using namespace unicode;

bool letter(uint8_t p) { return is_letter(p); }
bool number(uint8_t p) { return is_number(p); }
bool space(uint8_t p) { return is_space(p); }
// [^\s\p{L}\p{N}]: punctuation, symbols, marks, controls, invalid bytes.
bool other(uint8_t p) { return !is_space(p) && !is_letter(p) && !is_number(p); }
// o200k's [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] and [\p{Ll}\p{Lm}\p{Lo}\p{M}].
bool upperish(uint8_t p) {
  const uint8_t c = p & kClassMask;
  return c == kLu || c == kLt || c == kLm || c == kLo || c == kMark;
}
bool lowerish(uint8_t p) {
  const uint8_t c = p & kClassMask;
  return c == kLl || c == kLm || c == kLo || c == kMark;
}
bool crlf(uint32_t cp) { return cp == '\r' || cp == '\n'; }

const char* const kHfGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kHfCl100k =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kHfQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kHfO200k =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

SplitPattern make(SplitPattern::Family f, int digits, bool trailing, bool fold, const char* name) {
  SplitPattern p;
  p.family = f;
  p.max_digits = digits;
  p.trailing_space_run = trailing;
  p.case_fold_long_s = fold;
  p.name = name;
  return p;
}

}  // namespace

// tiktoken's current r50k/p50k and cl100k spellings add \s++$; for GPT-2 it changes nothing (a
// whitespace run at the end already matches \s+(?!\S) whole), for cl100k it does.
SplitPattern gpt2_split_pattern() { return make(SplitPattern::Gpt2, 0, true, false, "gpt2"); }
SplitPattern cl100k_split_pattern() { return make(SplitPattern::Cl100k, 3, true, true, "cl100k_base"); }
SplitPattern o200k_split_pattern() { return make(SplitPattern::O200k, 3, false, true, "o200k_base"); }

std::optional<SplitPattern> split_pattern_from_hf_regex(std::string_view regex) {
  if (regex == kHfGpt2) return make(SplitPattern::Gpt2, 0, false, false, "gpt2");
  if (regex == kHfCl100k) return make(SplitPattern::Cl100k, 3, false, true, "cl100k");
  if (regex == kHfQwen2) return make(SplitPattern::Cl100k, 1, false, true, "qwen2");
  if (regex == kHfO200k) return make(SplitPattern::O200k, 3, false, true, "o200k");
  return std::nullopt;
}

std::vector<std::string> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string> out;
  split(text, [&](std::string_view piece) { out.emplace_back(piece); });
  return out;
}

void PreTokenizer::decode(std::string_view text) const {
  cps_.clear();
  props_.clear();
  off_.clear();
  for (std::size_t i = 0; i < text.size();) {
    uint32_t cp;
    const std::size_t n = decode_utf8(text, i, cp);
    cps_.push_back(cp);
    props_.push_back(props(cp));
    off_.push_back(i);
    i += n;
  }
  off_.push_back(text.size());
}

std::size_t PreTokenizer::run(std::size_t i, bool (*in)(uint8_t)) const {
  while (i < props_.size() && in(props_[i])) ++i;
  return i;
}

std::size_t PreTokenizer::contraction(std::size_t i, bool any_case) const {
  const std::size_t n = cps_.size();
  if (i + 1 >= n || cps_[i] != '\'') return 0;
  auto lower = [&](std::size_t k) -> uint32_t {
    if (k >= n) return 0;
    const uint32_t c = cps_[k];
    if (!any_case) return c;
    if (c == 0x17F && pattern_.case_fold_long_s) return 's';
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
  };
  const uint32_t a = lower(i + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  const uint32_t b = lower(i + 2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

std::size_t PreTokenizer::whitespace(std::size_t i, bool crlf_alternative) const {
  const std::size_t n = cps_.size();
  const std::size_t j = run(i, space);
  if (pattern_.trailing_space_run && j == n) return j;  // \s++$
  if (crlf_alternative)                                  // \s*[\r\n]+: up to the last \r or \n
    for (std::size_t k = j; k > i; --k)
      if (crlf(cps_[k - 1])) return k;
  // \s+(?!\S): the whole run at the end of the text, else all but its last character (which
  // then leads the next piece); a single space before a non-space falls to \s+.
  if (j == n || j - i == 1) return j;
  return j - 1;
}

std::size_t PreTokenizer::match(std::size_t i) const {
  switch (pattern_.family) {
    case SplitPattern::Gpt2:
      return match_gpt2(i);
    case SplitPattern::Cl100k:
      return match_cl100k(i);
    case SplitPattern::O200k:
      return match_o200k(i);
  }
  return i + 1;
}

std::size_t PreTokenizer::match_gpt2(std::size_t i) const {
  if (const std::size_t k = contraction(i, false)) return i + k;
  const std::size_t n = cps_.size();
  const uint8_t p = props_[i];
  // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+'
  if (cps_[i] == ' ' && i + 1 < n) {
    const uint8_t q = props_[i + 1];
    if (is_letter(q)) return run(i + 1, letter);
    if (is_number(q)) return run(i + 1, number);
    if (other(q)) return run(i + 1, other);
  }
  if (is_letter(p)) return run(i, letter);
  if (is_number(p)) return run(i, number);
  if (other(p)) return run(i, other);
  return whitespace(i, false);
}

std::size_t PreTokenizer::match_cl100k(std::size_t i) const {
  if (const std::size_t k = contraction(i, true)) return i + k;
  const std::size_t n = cps_.size();
  const uint32_t c = cps_[i];
  const uint8_t p = props_[i];
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (!crlf(c) && !is_letter(p) && !is_number(p) && i + 1 < n && is_letter(props_[i + 1]))
    return run(i + 1, letter);
  if (is_letter(p)) return run(i, letter);
  // \p{N}{1,max_digits}
  if (is_number(p)) {
    std::size_t j = i;
    while (j < n && j - i < static_cast<std::size_t>(pattern_.max_digits) && is_number(props_[j])) ++j;
    return j;
  }
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  std::size_t j = 0;
  if (c == ' ' && i + 1 < n && other(props_[i + 1])) j = run(i + 1, other);
  else if (other(p)) j = run(i, other);
  if (j) {
    while (j < n && crlf(cps_[j])) ++j;
    return j;
  }
  return whitespace(i, true);
}

// o200k's letter parts from code point s, with U = Lu|Lt|Lm|Lo|M and W = Ll|Lm|Lo|M.
// [U]*[W]+: if the U-run is followed by W (necessarily Ll), W+ takes that run; otherwise U*
// gives back characters until the last W inside the U-run, which W+ then takes alone.
std::size_t PreTokenizer::o200k_upper_lower(std::size_t s) const {
  const std::size_t n = cps_.size();
  const std::size_t u = run(s, upperish);
  if (u < n && lowerish(props_[u])) return run(u, lowerish);
  for (std::size_t k = u; k > s; --k)
    if (lowerish(props_[k - 1])) return k;
  return 0;
}

// [U]+[W]*: both greedy, and W* may be empty, so no backtracking.
std::size_t PreTokenizer::o200k_upper_run(std::size_t s) const {
  const std::size_t u = run(s, upperish);
  return u > s ? run(u, lowerish) : 0;
}

std::size_t PreTokenizer::match_o200k(std::size_t i) const {
  const std::size_t n = cps_.size();
  const uint32_t c = cps_[i];
  const uint8_t p = props_[i];
  // Alternatives 1 and 2: [^\r\n\p{L}\p{N}]? letters (?i:contraction)?. Each is tried with the
  // optional prefix, then without it (the prefix class contains the marks, which are letters
  // here), before the next alternative.
  const bool prefix = !crlf(c) && !is_letter(p) && !is_number(p) && i + 1 < n;
  std::size_t e = 0;
  if (prefix) e = o200k_upper_lower(i + 1);
  if (!e) e = o200k_upper_lower(i);
  if (!e && prefix) e = o200k_upper_run(i + 1);
  if (!e) e = o200k_upper_run(i);
  if (e) return e + contraction(e, true);
  // \p{N}{1,3}
  if (is_number(p)) {
    std::size_t j = i;
    while (j < n && j - i < static_cast<std::size_t>(pattern_.max_digits) && is_number(props_[j])) ++j;
    return j;
  }
  // ' ?[^\s\p{L}\p{N}]+[\r\n/]*'
  std::size_t j = 0;
  if (c == ' ' && i + 1 < n && other(props_[i + 1])) j = run(i + 1, other);
  else if (other(p)) j = run(i, other);
  if (j) {
    while (j < n && (crlf(cps_[j]) || cps_[j] == '/')) ++j;
    return j;
  }
  return whitespace(i, true);
}

}  // namespace opd::data
