// Added and special tokens (<|endoftext|>, <|im_start|>, <think>, ...): found in the raw text
// before normalisation and pre-tokenization, so their text never goes through BPE.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace opd::data {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool lstrip = false;  // also swallow the whitespace before it
  bool rstrip = false;  // also swallow the whitespace after it
  bool special = false;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);

  // Splits text at added tokens, leftmost first and the longest at one position: calls
  // on_text(std::string_view) for each stretch of ordinary text (never empty) and
  // on_token(int32_t id) for each added token, in order.
  template <class OnText, class OnToken>
  void split(std::string_view text, OnText&& on_text, OnToken&& on_token) const {
    std::size_t done = 0;  // text before this is handled
    std::size_t pos = 0;
    while (pos < text.size()) {
      const AddedToken* t = first_byte_[static_cast<unsigned char>(text[pos])] ? match(text, pos) : nullptr;
      if (!t) {
        ++pos;
        continue;
      }
      std::size_t start = pos, end = pos + t->content.size();
      if (t->lstrip) start = strip_left(text, done, start);
      if (t->rstrip) end = strip_right(text, end);
      if (start > done) on_text(text.substr(done, start - done));
      on_token(t->id);
      done = pos = end;
    }
    if (done < text.size()) on_text(text.substr(done));
  }
  bool empty() const { return tokens_.empty(); }
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  const AddedToken* match(std::string_view text, std::size_t pos) const;
  static std::size_t strip_left(std::string_view text, std::size_t lo, std::size_t pos);
  static std::size_t strip_right(std::string_view text, std::size_t pos);

  std::vector<AddedToken> tokens_;  // longest first
  bool first_byte_[256] = {};
};

}  // namespace opd::data
