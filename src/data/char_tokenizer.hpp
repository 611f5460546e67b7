// CharTokenizer: a fixed 100-token character vocabulary for synthetic tasks: the four specials,
// newline and printable ASCII; anything else encodes to <unk>.
#pragma once

#include "data/tokenizer.hpp"

namespace opd::data {

// Ids: 0 <pad>, 1 <bos>, 2 <eos>, 3 <unk>, 4 '\n', 5..99 the characters 32 (' ') .. 126 ('~').
// The vocabulary is fixed in code (not learned from data), so every model trained with it shares
// the same ids without a tokenizer file.
class CharTokenizer final : public Tokenizer {
 public:
  static constexpr int32_t kPad = 0, kBos = 1, kEos = 2, kUnk = 3, kNewline = 4,
                           kFirstPrintable = 5;
  static constexpr int32_t kVocabSize = 100;

  // One id per character. A non-ASCII UTF-8 character (lead byte plus continuation bytes) becomes
  // one <unk>, as does any other byte outside the vocabulary (tab, carriage return, ...).
  std::vector<int32_t> encode(std::string_view text) const override;
  // <unk> decodes to U+FFFD (the Unicode replacement character), the usual spelling of "unknown".
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string piece(int32_t id) const override;

  int32_t vocab_size() const override { return kVocabSize; }
  int32_t pad_id() const override { return kPad; }
  int32_t bos_id() const override { return kBos; }
  int32_t eos_id() const override { return kEos; }
  int32_t unk_id() const { return kUnk; }

  std::string name() const override { return "char"; }
  std::string describe() const override;

  // The id of one character (kUnk when it is outside the vocabulary).
  static int32_t char_id(unsigned char c);
};

}  // namespace opd::data
