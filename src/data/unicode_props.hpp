// Unicode code point properties for the tokenizer's pre-token matcher (letters by case class,
// marks, numbers, White_Space, NFC stability) and a lenient UTF-8 decoder. Unicode 15.0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace opd::data::unicode {

// General category classes; the values are those of unicode_tables_gen.py.
enum Class : uint8_t { kOther = 0, kLu = 1, kLl = 2, kLt = 3, kLm = 4, kLo = 5, kMark = 6, kNumber = 7 };
inline constexpr uint8_t kClassMask = 7;
inline constexpr uint8_t kSpaceBit = 8;         // White_Space (what \s matches in the regexes)
inline constexpr uint8_t kNfcUnstableBit = 16;  // NFC_QC is No/Maybe, or a non-zero combining class

// Property bits of a code point (0 for code points above U+10FFFF).
uint8_t props(uint32_t cp);

inline bool is_letter(uint8_t p) {
  const uint8_t c = p & kClassMask;
  return c >= kLu && c <= kLo;
}
inline bool is_number(uint8_t p) { return (p & kClassMask) == kNumber; }
inline bool is_space(uint8_t p) { return (p & kSpaceBit) != 0; }

// Decodes the UTF-8 character at text[i] into cp and returns its length in bytes. A malformed or
// truncated sequence (or a surrogate, or an overlong form) is returned as one byte with cp =
// kInvalid, so that any byte string can be walked and byte-level BPE still sees every byte.
inline constexpr uint32_t kInvalid = 0xFFFFFFFFu;
std::size_t decode_utf8(std::string_view text, std::size_t i, uint32_t& cp);
// Appends the UTF-8 encoding of cp (cp <= U+10FFFF, not a surrogate).
void append_utf8(std::string& out, uint32_t cp);

}  // namespace opd::data::unicode
