// Recipes: the off-policy cold start — teacher_generate writes filtered teacher responses that an
// sft stage trains on through data = "@stage" — before a distill stage.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "data/dataset.hpp"
#include "data/verifier.hpp"
#include "testing/process.hpp"
#include "testing/tiny_job.hpp"

using namespace opd::testing;
namespace fs = std::filesystem;

TEST(Recipes, ColdStartFromTeacherSamples) {
  ScratchDir dir("recipes");
  make_arith_data(dir.path(), 2000);
  const std::string job =
      "[run]\ndir = \"runs/c\"\nseed = 2\n"
      "[model.teacher]\nd_model = 48\nn_layers = 2\nn_heads = 2\nd_ff = 96\nmax_seq_len = 48\n"
      "tie_embeddings = true\n"
      "[model.student]\nd_model = 16\nn_layers = 1\nn_heads = 2\nd_ff = 32\nmax_seq_len = 48\n"
      "[[stage]]\nname = \"teacher\"\nkind = \"pretrain\"\nmodel = \"teacher\"\ndata = \"train.jsonl\"\n"
      "loss = \"response\"\nsteps = 250\nbatch_size = 16\nseq_len = 40\n"
      "[stage.optim]\nlr = 3e-3\nwarmup = 20\nschedule = \"cosine\"\n"
      "[[stage]]\nname = \"samples\"\nkind = \"teacher_generate\"\nmodel = \"@teacher\"\n"
      "data = \"test.jsonl\"\nsamples = 2\nmax_new_tokens = 40\nrequire_correct = true\n"
      "[[stage]]\nname = \"cold\"\nkind = \"sft\"\nmodel = \"student\"\ndata = \"@samples\"\n"
      "steps = 5\nbatch_size = 8\nseq_len = 40\n"
      "[[stage]]\nname = \"distill\"\nkind = \"distill\"\nmodel = \"@cold\"\nteacher = \"@teacher\"\n"
      "data = \"test.jsonl\"\nsteps = 2\nprompts_per_step = 2\nsamples_per_prompt = 2\ntopk = 4\n"
      "[stage.rollout]\nmax_new_tokens = 10\n";
  write_file(dir / "job.toml", job);
  auto r = run_opd("run job.toml", dir.path());
  ASSERT_EQ(r.status, 0) << r.err << r.out;

  // Every kept response is complete, carries the marker and verifies (require_correct).
  const auto kept = opd::data::load_jsonl((dir / "runs/c/samples/samples.jsonl").string());
  auto summary = nlohmann::json::parse(read_file(dir / "runs/c/samples/results.json"));
  EXPECT_EQ(summary["responses"].get<int>(), 80);
  EXPECT_EQ(static_cast<int>(kept.size()), summary["kept"].get<int>());
  EXPECT_GT(kept.size(), 0u);
  int rejected = 0;
  for (const auto& [why, count] : summary["rejected"].items()) rejected += count.get<int>();
  EXPECT_EQ(static_cast<int>(kept.size()) + rejected, 80);
  for (const auto& ex : kept) EXPECT_TRUE(opd::data::verify(ex.response, ex.answer, "answer")) << ex.response;
  EXPECT_TRUE(fs::exists(dir / "runs/c/cold/DONE"));
  EXPECT_TRUE(fs::exists(dir / "runs/c/distill/DONE"));
}
