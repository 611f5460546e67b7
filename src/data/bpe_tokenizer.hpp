// BpeTokenizer: byte-level BPE (GPT-2, cl100k/o200k, Llama-3, Qwen2/Qwen3), built from a BpeSpec
// that a loader fills from a tokenizer.json, GPT-2's encoder.json + vocab.bpe, or a tiktoken rank
// file. Encoding: added tokens first, then (optionally) NFC, the split pattern, and rank-ordered
// merges over each pre-token's bytes, with a cache of pre-token -> ids.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "data/bpe_added_tokens.hpp"
#include "data/bpe_merges.hpp"
#include "data/bpe_pretokenizer.hpp"
#include "data/tokenizer.hpp"

namespace opd::data {

// Everything that defines a byte-level BPE tokenizer, in raw bytes (no byte-to-unicode text).
struct BpeSpec {
  std::string kind;  // "hf" or "tiktoken": the make_tokenizer kind
  // Token id -> its bytes; nullopt for ids the file leaves unused (tiktoken's special-id gaps).
  std::vector<std::optional<std::string>> tokens;
  std::vector<BpeMerge> merges;
  std::vector<AddedToken> added;  // matched in the raw text before anything else
  SplitPattern pattern;
  bool nfc = false;               // normalise each text stretch to NFC before splitting
  bool add_prefix_space = false;  // ByteLevel add_prefix_space: a leading space if none
  // A pre-token that is itself a token is that token, without merging (tiktoken always;
  // Hugging Face when the model says ignore_merges, as Llama-3's does).
  bool ignore_merges = false;
  int32_t pad = -1, bos = -1, eos = -1;
  // The identity of the source files (content hashes) for describe(); see BpeTokenizer.
  std::string source;
};

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(BpeSpec spec);

  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string piece(int32_t id) const override;

  int32_t vocab_size() const override { return static_cast<int32_t>(spec_.tokens.size()); }
  int32_t pad_id() const override { return spec_.pad; }
  int32_t bos_id() const override { return spec_.bos; }
  int32_t eos_id() const override { return spec_.eos; }
  std::string name() const override { return spec_.kind; }
  // "opd-bpe-v1 kind=... <source hashes> pattern=... vocab_size=... pad=... bos=... eos=...".
  std::string describe() const override;

  // The id of a token given by its bytes (added tokens by their text), or nullopt.
  std::optional<int32_t> token_id(std::string_view bytes) const;
  const BpeSpec& spec() const { return spec_; }

 private:
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;

  BpeSpec spec_;
  BpeMergeTable merges_;
  AddedTokenMatcher added_;
  std::unordered_map<std::string, int32_t> by_bytes_;
  int32_t byte_id_[256];
  PreTokenizer pretok_;

  // encode() is const but fills a cache and reuses the pre-tokenizer's scratch: one lock per
  // call keeps it safe to share between threads.
  mutable std::mutex mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
  mutable std::vector<int32_t> scratch_;
};

// The bytes <-> printable-unicode mapping of byte-level BPE vocabularies (GPT-2's
// bytes_to_unicode): bytes 33..126, 161..172 and 174..255 stand for themselves, the other 68
// take the code points 256, 257, ... in byte order.
uint32_t byte_to_unicode(unsigned char b);
// The byte a code point stands for, or -1 if it stands for none.
int byte_from_unicode(uint32_t cp);

}  // namespace opd::data
