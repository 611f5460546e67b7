// Tokenizer: the interface every opd tokenizer implements (text <-> token ids, special ids, an
// exact description for checkpoints), and the factory that makes one by kind.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace opd::data {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Text to ids. Adds no special tokens: sequence building (sequence.hpp) adds BOS and EOS, so
  // that prompt and response can be encoded separately and concatenated.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // Ids to text. Pad, BOS and EOS are skipped (they carry no text, and generated sequences end in
  // EOS and padding); an id outside [0, vocab_size()) is an Input error (a model/tokenizer
  // mismatch).
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  // The text of one id, specials spelled out (e.g. "<eos>"): for logs and diagnostics only.
  virtual std::string piece(int32_t id) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual int32_t pad_id() const = 0;
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;

  // Short kind name, as accepted by make_tokenizer ("char", "hf", "tiktoken").
  virtual std::string name() const = 0;
  // Canonical text that identifies the tokenizer exactly (vocabulary and special ids). It is
  // stored in checkpoints; two tokenizers encode and decode identically iff their describe()
  // strings are equal, which is how teacher and student are checked to share one tokenizer.
  virtual std::string describe() const = 0;
};

// Kinds make_tokenizer knows, in the order they are listed in error messages.
const std::vector<std::string>& tokenizer_kinds();

// A tokenizer from "KIND" or "KIND:PATH": "char"; "hf:tokenizer.json" (a Hugging Face byte-level
// BPE file); "tiktoken:cl100k_base.tiktoken" (a tiktoken rank file). An unknown kind is an Input
// error listing the known kinds.
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& spec);

}  // namespace opd::data
