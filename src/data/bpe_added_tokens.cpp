// Added-token matching: a first-byte filter, then the candidates longest first.
#include "data/bpe_added_tokens.hpp"

#include <algorithm>

#include "data/unicode_props.hpp"

namespace opd::data {

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  std::erase_if(tokens_, [](const AddedToken& t) { return t.content.empty(); });
  std::stable_sort(tokens_.begin(), tokens_.end(), [](const AddedToken& a, const AddedToken& b) {
    return a.content.size() > b.content.size();
  });
  for (const AddedToken& t : tokens_) first_byte_[static_cast<unsigned char>(t.content[0])] = true;
}

const AddedToken* AddedTokenMatcher::match(std::string_view text, std::size_t pos) const {
  const std::string_view rest = text.substr(pos);
  for (const AddedToken& t : tokens_)
    if (rest.starts_with(t.content)) return &t;
  return nullptr;
}

std::size_t AddedTokenMatcher::strip_left(std::string_view text, std::size_t lo, std::size_t pos) {
  // Walk forward from lo (UTF-8 is not safely walked backwards through invalid bytes) and keep
  // where the final whitespace run begins.
  std::size_t run_start = pos;
  for (std::size_t i = lo; i < pos;) {
    uint32_t cp;
    const std::size_t n = unicode::decode_utf8(text, i, cp);
    if (!unicode::is_space(unicode::props(cp))) run_start = pos;
    else if (run_start == pos) run_start = i;
    i += n;
  }
  return run_start;
}

std::size_t AddedTokenMatcher::strip_right(std::string_view text, std::size_t pos) {
  while (pos < text.size()) {
    uint32_t cp;
    const std::size_t n = unicode::decode_utf8(text, pos, cp);
    if (!unicode::is_space(unicode::props(cp))) break;
    pos += n;
  }
  return pos;
}

}  // namespace opd::data
