// BpeTokenizer: added tokens, normalisation, pre-tokens, cached merges; decoding by bytes.
#include "data/bpe_tokenizer.hpp"

#include "core/error.hpp"
#include "data/unicode_nfc.hpp"

namespace opd::data {
namespace {

// Bounds the cache (distinct pre-tokens of a corpus grow without limit); when full it is simply
// emptied, which costs a little speed and no correctness.
constexpr std::size_t kCacheLimit = 1 << 18;

}  // namespace

uint32_t byte_to_unicode(unsigned char b) {
  if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
  uint32_t n = 0;  // the rank of b among the bytes that do not stand for themselves
  for (int c = 0; c < b; ++c)
    if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174)) ++n;
  return 256 + n;
}

int byte_from_unicode(uint32_t cp) {
  static const auto table = [] {
    std::vector<int> t(512, -1);
    for (int b = 0; b < 256; ++b) t[byte_to_unicode(static_cast<unsigned char>(b))] = b;
    return t;
  }();
  return cp < table.size() ? table[cp] : -1;
}

BpeTokenizer::BpeTokenizer(BpeSpec spec)
    : spec_(std::move(spec)), merges_(spec_.merges), added_(spec_.added), pretok_(spec_.pattern) {
  spec_.merges.clear();  // the table holds them now
  spec_.merges.shrink_to_fit();
  by_bytes_.reserve(spec_.tokens.size());
  for (std::size_t id = 0; id < spec_.tokens.size(); ++id)
    if (spec_.tokens[id]) by_bytes_.emplace(*spec_.tokens[id], static_cast<int32_t>(id));
  // Added tokens are found by the matcher, never by byte lookup of a pre-token: an added
  // token's text must not come out of ordinary text through the ignore_merges shortcut.
  for (const AddedToken& t : spec_.added) {
    auto it = by_bytes_.find(t.content);
    if (it != by_bytes_.end() && it->second == t.id) by_bytes_.erase(it);
  }
  for (int b = 0; b < 256; ++b) {
    auto it = by_bytes_.find(std::string(1, static_cast<char>(b)));
    byte_id_[b] = it == by_bytes_.end() ? -1 : it->second;
  }
  for (int32_t id : {spec_.pad, spec_.bos, spec_.eos})
    OPD_CHECK(id >= 0 && id < vocab_size() && spec_.tokens[id], "special id ", id);
}

std::optional<int32_t> BpeTokenizer::token_id(std::string_view bytes) const {
  for (const AddedToken& t : added_.tokens())
    if (t.content == bytes) return t.id;
  auto it = by_bytes_.find(std::string(bytes));
  if (it == by_bytes_.end()) return std::nullopt;
  return it->second;
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 1);
  if (added_.empty()) {
    encode_text(text, out);
  } else {
    added_.split(
        text, [&](std::string_view t) { encode_text(t, out); },
        [&](int32_t id) { out.push_back(id); });
  }
  return out;
}

void BpeTokenizer::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  std::string owned;
  if (spec_.nfc && !unicode::nfc_quick_check(text)) {
    owned = unicode::nfc(text);
    text = owned;
  }
  if (spec_.add_prefix_space && !text.empty() && text[0] != ' ') {
    owned = " " + std::string(text);
    text = owned;
  }
  pretok_.split(text, [&](std::string_view piece) { encode_piece(piece, out); });
}

void BpeTokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  const std::string key(piece);
  if (auto it = cache_.find(key); it != cache_.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  scratch_.clear();
  if (spec_.ignore_merges) {
    if (auto it = by_bytes_.find(key); it != by_bytes_.end()) scratch_.push_back(it->second);
  }
  if (scratch_.empty()) {
    for (char c : piece) {
      const int32_t id = byte_id_[static_cast<unsigned char>(c)];
      if (id < 0)
        input_error("tokenizer",
                    detail::concat("the vocabulary has no token for the byte 0x", std::hex,
                                   int(static_cast<unsigned char>(c))),
                    "byte-level BPE needs all 256 single-byte tokens; is this a byte-level file?");
      scratch_.push_back(id);
    }
    bpe_merge(merges_, scratch_);
  }
  out.insert(out.end(), scratch_.begin(), scratch_.end());
  if (cache_.size() >= kCacheLimit) cache_.clear();
  cache_.emplace(key, scratch_);
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string text;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= vocab_size() || !spec_.tokens[id])
      input_error(spec_.kind + " tokenizer",
                  detail::concat("token id ", id, " at position ", i,
                                 " is not in the vocabulary (", vocab_size(), " ids)"),
                  "the model's vocabulary does not match the tokenizer's");
    if (id == spec_.pad || id == spec_.bos || id == spec_.eos) continue;
    text += *spec_.tokens[id];
  }
  return text;
}

std::string BpeTokenizer::piece(int32_t id) const {
  if (id < 0 || id >= vocab_size() || !spec_.tokens[id]) return detail::concat("<invalid:", id, ">");
  return *spec_.tokens[id];
}

std::string BpeTokenizer::describe() const {
  return detail::concat("opd-bpe-v1 kind=", spec_.kind, " ", spec_.source,
                        " pattern=", spec_.pattern.name, " nfc=", spec_.nfc ? 1 : 0,
                        " prefix_space=", spec_.add_prefix_space ? 1 : 0,
                        " ignore_merges=", spec_.ignore_merges ? 1 : 0,
                        " vocab_size=", vocab_size(), " pad=", spec_.pad, " bos=", spec_.bos,
                        " eos=", spec_.eos);
}

}  // namespace opd::data
