// Code point properties from the generated range tables, expanded once into a flat byte table
// (1.1 MB) so the pre-token matcher pays one load per character.
#include "data/unicode_props.hpp"

#include <vector>

#include "data/unicode_tables.hpp"

namespace opd::data::unicode {
namespace {

constexpr uint32_t kMaxCodePoint = 0x10FFFF;

const std::vector<uint8_t>& flat_props() {
  static const std::vector<uint8_t> table = [] {
    namespace t = unicode_tables;
    std::vector<uint8_t> v(kMaxCodePoint + 1);
    for (std::size_t i = 0; i < t::kPropStart_size; ++i) {
      const uint32_t end = i + 1 < t::kPropStart_size ? t::kPropStart[i + 1] : kMaxCodePoint + 1;
      for (uint32_t c = t::kPropStart[i]; c < end; ++c) v[c] = t::kPropValue[i];
    }
    return v;
  }();
  return table;
}

}  // namespace

uint8_t props(uint32_t cp) {
  static const uint8_t* table = flat_props().data();
  return cp <= kMaxCodePoint ? table[cp] : 0;
}

std::size_t decode_utf8(std::string_view text, std::size_t i, uint32_t& cp) {
  const auto b0 = static_cast<unsigned char>(text[i]);
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  std::size_t len;
  uint32_t min, v;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2, min = 0x80, v = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3, min = 0x800, v = b0 & 0x0F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4, min = 0x10000, v = b0 & 0x07;
  } else {
    cp = kInvalid;
    return 1;
  }
  if (i + len > text.size()) {
    cp = kInvalid;
    return 1;
  }
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(text[i + k]);
    if ((b & 0xC0) != 0x80) {
      cp = kInvalid;
      return 1;
    }
    v = (v << 6) | (b & 0x3F);
  }
  if (v < min || v > kMaxCodePoint || (v >= 0xD800 && v <= 0xDFFF)) {
    cp = kInvalid;
    return 1;
  }
  cp = v;
  return len;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace opd::data::unicode
