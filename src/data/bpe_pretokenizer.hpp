// The pre-tokenizer split patterns of byte-level BPE tokenizers, matched by hand over code
// points: the four regex families that GPT-2, cl100k/Llama-3, Qwen2/Qwen3 and o200k files use.
// std::regex has no \p{L}, no possessive behaviour worth the name and no (?i:...) groups, and the
// patterns are fixed, so each family is a short function that reproduces the regex's
// leftmost-first, greedy-with-backtracking result exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace opd::data {

// One pattern family and its variations. Whitespace handling (the last alternatives) is shared:
// \s*[\r\n]+ (not in GPT-2), then \s+(?!\S), then \s+ -- or, in tiktoken's current spellings,
// first \s++$ (a whitespace run that ends the text is one piece).
struct SplitPattern {
  enum Family {
    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    // (GPT-2, r50k_base, p50k_base; the ByteLevel pre-tokenizer with use_regex = true)
    Gpt2,
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
    // \s*[\r\n]+|\s+(?!\S)|\s+   (cl100k_base, Llama-3; with \p{N} alone: Qwen2, Qwen3)
    Cl100k,
    // o200k_base (GPT-4o): case-aware letter runs with an optional contraction suffix, then
    // \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]* and the whitespace alternatives.
    O200k,
  };
  Family family = Gpt2;
  int max_digits = 0;               // Cl100k, O200k: \p{N}{1,max_digits}; Gpt2: unused (\p{N}+)
  bool trailing_space_run = false;  // \s++$ first among the whitespace alternatives
  bool case_fold_long_s = false;    // (?i:'s): U+017F (long s) folds to s, as in Rust's regex
  const char* name = "";            // "gpt2", "cl100k", "qwen2", "o200k", ...
};

// Patterns as tiktoken's encodings define them (their current spellings).
SplitPattern gpt2_split_pattern();
SplitPattern cl100k_split_pattern();
SplitPattern o200k_split_pattern();

// The pattern a Hugging Face tokenizer.json spells in its Split pre-tokenizer, or nullopt for a
// regex opd does not know. Matching is on the exact text, so an unknown pattern is never
// approximated: the caller reports it.
std::optional<SplitPattern> split_pattern_from_hf_regex(std::string_view regex);

// Splits text into pre-tokens (byte ranges of text, in order, covering all of it). Calls
// emit(std::string_view piece) for each. Bytes that are not valid UTF-8 count as punctuation.
class PreTokenizer {
 public:
  explicit PreTokenizer(SplitPattern p) : pattern_(p) {}
  const SplitPattern& pattern() const { return pattern_; }

  template <class Emit>
  void split(std::string_view text, Emit&& emit) const {
    decode(text);
    const std::size_t n = cps_.size();
    for (std::size_t i = 0; i < n;) {
      const std::size_t j = match(i);
      emit(text.substr(off_[i], off_[j] - off_[i]));
      i = j;
    }
  }
  std::vector<std::string> split(std::string_view text) const;

 private:
  void decode(std::string_view text) const;
  // End (in code points) of the pattern's match at code point i; always > i.
  std::size_t match(std::size_t i) const;
  std::size_t match_gpt2(std::size_t i) const;
  std::size_t match_cl100k(std::size_t i) const;
  std::size_t match_o200k(std::size_t i) const;
  std::size_t o200k_upper_lower(std::size_t s) const;  // end of the letters, or 0: no match
  std::size_t o200k_upper_run(std::size_t s) const;
  std::size_t contraction(std::size_t i, bool any_case) const;  // its length in code points, or 0
  std::size_t whitespace(std::size_t i, bool crlf_alternative) const;
  std::size_t run(std::size_t i, bool (*in)(uint8_t)) const;

  SplitPattern pattern_;
  // Scratch for the text being split: code points, their property bits, and byte offsets
  // (off_ has one more entry: the text's end).
  mutable std::vector<uint32_t> cps_;
  mutable std::vector<uint8_t> props_;
  mutable std::vector<std::size_t> off_;
};

}  // namespace opd::data
