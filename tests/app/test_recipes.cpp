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

TEST(Recipes, TemplatesMixingAndPromptSelection) {
  ScratchDir dir("recipes-align");
  make_arith_data(dir.path(), 200);
  const std::string full =
      "[run]\ndir = \"runs/a\"\nseed = 5\n"
      "[model.teacher]\nd_model = 32\nn_layers = 1\nn_heads = 2\nd_ff = 64\nmax_seq_len = 48\n"
      "[model.student]\nd_model = 16\nn_layers = 1\nn_heads = 2\nd_ff = 32\nmax_seq_len = 48\n"
      "[[stage]]\nname = \"teacher\"\nkind = \"pretrain\"\nmodel = \"teacher\"\n"
      "template = \"Q: {prompt}\\n\"\ndata = \"train.jsonl\"\nsteps = 6\nbatch_size = 8\nseq_len = 44\n"
      "[[stage]]\nname = \"student\"\nkind = \"pretrain\"\nmodel = \"student\"\n"
      "data = \"train.jsonl\"\nsteps = 3\nbatch_size = 8\nseq_len = 40\n"
      "[[stage]]\nname = \"distill\"\nkind = \"distill\"\nmodel = \"@student\"\nteacher = \"@teacher\"\n"
      "data = \"train.jsonl\"\ndata_weight = 1.0\nteacher_template = \"Q: {prompt}\\n\"\n"
      "steps = 3\nprompts_per_step = 3\nsamples_per_prompt = 2\nsignal = \"topk\"\ntopk = 4\n"
      "[[stage.mix]]\ndata = \"test.jsonl\"\nweight = 3.0\n"
      "[stage.prompt_select]\nfraction = 0.25\ncandidates = 40\n"
      "[stage.rollout]\nmax_new_tokens = 12\n"
      "[stage.eval]\ndata = \"test.jsonl\"\nlimit = 4\nmax_new_tokens = 12\n";
  write_file(dir / "job.toml", full);
  auto r = run_opd("run job.toml", dir.path());
  ASSERT_EQ(r.status, 0) << r.err << r.out;
  auto sel = nlohmann::json::parse(read_file(dir / "runs/a/distill/selected_prompts.json"));
  EXPECT_EQ(sel["candidates"].get<int>(), 40);
  EXPECT_EQ(sel["kept"].get<int>(), 10);
  EXPECT_EQ(sel["selected"].size(), 10u);
  EXPECT_GE(sel["mean_overlap_kept"].get<double>(), sel["mean_overlap_all"].get<double>());
  EXPECT_NE(r.out.find("prompt selection kept 10 of 40"), std::string::npos) << r.out;

  // A template without its {prompt} slot is refused before anything runs.
  std::string bad = full;
  bad.replace(bad.find("teacher_template = \"Q: {prompt}\\n\""), 34, "teacher_template = \"Q: \"");
  write_file(dir / "bad.toml", bad);
  fs::remove_all(dir / "runs");
  auto b = run_opd("run bad.toml", dir.path());
  EXPECT_EQ(b.status, 2) << b.err;
  EXPECT_NE(b.err.find("{prompt}"), std::string::npos) << b.err;
  EXPECT_FALSE(fs::exists(dir / "runs"));
}

TEST(Recipes, TeacherGenerateStopsAtItsStopTexts) {
  // A barely trained teacher rarely writes EOS, so without stop texts its responses are
  // incomplete; with stop = ["="] each response ends at its first "=" and is kept.
  ScratchDir dir("recipes-stop");
  make_arith_data(dir.path(), 100);
  const std::string job =
      "[run]\ndir = \"runs/s\"\nseed = 3\n"
      "[model.teacher]\nd_model = 32\nn_layers = 1\nn_heads = 2\nd_ff = 64\nmax_seq_len = 48\n"
      "[[stage]]\nname = \"teacher\"\nkind = \"pretrain\"\nmodel = \"teacher\"\ndata = \"train.jsonl\"\n"
      "loss = \"response\"\nsteps = 30\nbatch_size = 16\nseq_len = 40\n[stage.optim]\nlr = 3e-3\n"
      "[[stage]]\nname = \"samples\"\nkind = \"teacher_generate\"\nmodel = \"@teacher\"\n"
      "data = \"test.jsonl\"\nlimit = 10\nmax_new_tokens = 30\nrequire_marker = false\nstop = [\"=\"]\n";
  write_file(dir / "job.toml", job);
  auto r = run_opd("run job.toml", dir.path());
  ASSERT_EQ(r.status, 0) << r.err << r.out;
  const auto kept = opd::data::load_jsonl((dir / "runs/s/samples/samples.jsonl").string());
  ASSERT_GT(kept.size(), 0u);
  int at_stop = 0;
  for (const auto& ex : kept) {
    ASSERT_FALSE(ex.response.empty());
    // Ended by EOS (no "=" written), or at its first "=".
    const auto eq = ex.response.find('=');
    EXPECT_TRUE(eq == std::string::npos || eq == ex.response.size() - 1) << ex.response;
    at_stop += eq != std::string::npos;
  }
  EXPECT_GT(at_stop, 0);
}
