// Loaders of Hugging Face byte-level BPE files into a BpeSpec: tokenizer.json (GPT-2, Llama-3,
// Qwen2/Qwen3 layouts) and the original GPT-2 pair encoder.json + vocab.bpe.
#pragma once

#include <string>

#include "data/bpe_tokenizer.hpp"

namespace opd::data {

// Reads a tokenizer.json. Supported: model BPE (no byte fallback, no subword prefix/suffix,
// ignore_merges honoured); normalizer null or NFC; pre_tokenizer ByteLevel (GPT-2 regex) or
// Sequence[Split(known regex, Isolated), ByteLevel(use_regex=false)]; added tokens with
// lstrip/rstrip. Anything else is an Input error naming the part. pad/bos/eos come from a
// tokenizer_config.json beside the file when there is one (its hash then joins the identity),
// else from the usual token names.
BpeSpec load_hf_tokenizer_json(const std::string& path);

// Reads GPT-2's encoder.json (token -> id) and vocab.bpe (merges, one "a b" per line after a
// "#version" header). <|endoftext|> is the special token and pad/bos/eos.
BpeSpec load_gpt2_encoder(const std::string& encoder_json, const std::string& vocab_bpe);

// Whole file as bytes; an unreadable file is an Input error naming it.
std::string read_tokenizer_file(const std::string& path);

}  // namespace opd::data
