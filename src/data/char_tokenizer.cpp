// CharTokenizer: encode, decode and the canonical description of the fixed character vocabulary.
#include "data/char_tokenizer.hpp"

#include "core/error.hpp"

namespace opd::data {

int32_t CharTokenizer::char_id(unsigned char c) {
  if (c == '\n') return kNewline;
  if (c >= 32 && c <= 126) return kFirstPrintable + (c - 32);
  return kUnk;
}

std::vector<int32_t> CharTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    ids.push_back(char_id(c));
    if (c >= 0xC0) {
      // A UTF-8 lead byte: skip its continuation bytes so one character is one <unk>.
      while (i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80) ++i;
    }
  }
  return ids;
}

std::string CharTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string text;
  text.reserve(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= kVocabSize)
      input_error("char tokenizer",
                  detail::concat("token id ", id, " at position ", i,
                                 " is outside the vocabulary [0, ", kVocabSize, ")"),
                  "the model's vocabulary does not match the tokenizer's");
    if (id == kPad || id == kBos || id == kEos) continue;
    if (id == kUnk) {
      text += "\xEF\xBF\xBD";
    } else if (id == kNewline) {
      text += '\n';
    } else {
      text += static_cast<char>(32 + (id - kFirstPrintable));
    }
  }
  return text;
}

std::string CharTokenizer::piece(int32_t id) const {
  switch (id) {
    case kPad:
      return "<pad>";
    case kBos:
      return "<bos>";
    case kEos:
      return "<eos>";
    case kUnk:
      return "<unk>";
    case kNewline:
      return "\\n";
    default:
      break;
  }
  if (id < 0 || id >= kVocabSize) return detail::concat("<invalid:", id, ">");
  return std::string(1, static_cast<char>(32 + (id - kFirstPrintable)));
}

std::string CharTokenizer::describe() const {
  // Versioned and explicit about every id range, so any change to the vocabulary changes the text.
  return "opd-char-v1 vocab_size=100 pad=0 bos=1 eos=2 unk=3 newline=4 "
         "printable_ascii=5..99:32..126";
}

}  // namespace opd::data
