// The stage chain of a job: pretraining on a plain text file, SFT from the pretrained model
// (response-only loss), evaluation; plus the smaller subcommands (inspect, generate, data).
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "testing/process.hpp"
#include "testing/tiny_job.hpp"

using namespace opd::testing;
namespace fs = std::filesystem;

namespace {
std::vector<double> losses(const fs::path& metrics) {
  std::vector<double> v;
  for (const auto& j : read_jsonl(metrics)) v.push_back(j["loss"].get<double>());
  return v;
}
double mean(const std::vector<double>& v, std::size_t from, std::size_t to) {
  double s = 0;
  for (std::size_t i = from; i < to; ++i) s += v[i];
  return s / static_cast<double>(to - from);
}
}  // namespace

TEST(Stages, TextPretrainThenSftThenEval) {
  ScratchDir dir("stages");
  make_arith_data(dir.path(), 300);
  std::string text;
  for (int i = 0; i < 400; ++i) text += "the quick brown fox jumps over the lazy dog " + std::to_string(i % 10) + "\n";
  write_file(dir / "corpus.txt", text);
  const std::string job =
      "[run]\ndir = \"runs/s\"\nseed = 3\n"
      "[model.tiny]\nd_model = 32\nn_layers = 1\nn_heads = 2\nd_ff = 64\nmax_seq_len = 48\n"
      "qkv_bias = true\nqk_norm = true\n"
      "[[stage]]\nname = \"lm\"\nkind = \"pretrain\"\nmodel = \"tiny\"\ndata = \"corpus.txt\"\n"
      "steps = 30\nbatch_size = 8\nseq_len = 32\n[stage.optim]\nlr = 3e-3\n"
      "[[stage]]\nname = \"sft\"\nkind = \"sft\"\nmodel = \"@lm\"\ndata = \"train.jsonl\"\n"
      "steps = 40\nbatch_size = 8\nseq_len = 40\n[stage.optim]\nlr = 3e-3\n"
      "[[stage]]\nname = \"eval\"\nkind = \"eval\"\nmodel = \"@sft\"\ndata = \"test.jsonl\"\n"
      "samples = 2\ntemperature = 1.0\ntop_p = 0.9\nmax_new_tokens = 30\nlimit = 5\n";
  write_file(dir / "job.toml", job);
  auto r = run_opd("run job.toml", dir.path());
  ASSERT_EQ(r.status, 0) << r.err << r.out;
  for (const char* s : {"lm", "sft", "eval"}) EXPECT_TRUE(fs::exists(dir / "runs/s" / s / "DONE")) << s;

  const auto lm = losses(dir / "runs/s/lm/metrics.jsonl");
  ASSERT_EQ(lm.size(), 30u);
  EXPECT_LT(mean(lm, 25, 30), 0.6 * mean(lm, 0, 5));
  const auto sft = losses(dir / "runs/s/sft/metrics.jsonl");
  ASSERT_EQ(sft.size(), 40u);
  EXPECT_LT(mean(sft, 35, 40), mean(sft, 0, 5));

  auto res = nlohmann::json::parse(read_file(dir / "runs/s/eval/results.json"));
  EXPECT_EQ(res["examples"].get<int>(), 5);
  EXPECT_EQ(res["samples_per_example"].get<int>(), 2);
  EXPECT_NE(res["model"].get<std::string>().find("runs/s/sft/checkpoints/step_00000040.h5"),
            std::string::npos);

  // inspect shows the SFT checkpoint's tensors and state.
  auto ins = run_opd("inspect runs/s/sft/checkpoints/step_00000040.h5", dir.path());
  ASSERT_EQ(ins.status, 0) << ins.err;
  EXPECT_NE(ins.out.find("model/model.layers.0.self_attn.q_norm.weight"), std::string::npos);
  EXPECT_NE(ins.out.find("model/model.layers.0.self_attn.q_proj.bias"), std::string::npos);
  EXPECT_NE(ins.out.find("state/step = 40"), std::string::npos) << ins.out;

  // generate samples from it: one JSON line per sample.
  auto gen = run_opd("generate --model runs/s/sft/checkpoints/step_00000040.h5 --prompt 12+34= "
                     "--samples 3 --max-new-tokens 5 --temperature 1",
                     dir.path());
  ASSERT_EQ(gen.status, 0) << gen.err;
  EXPECT_EQ(std::count(gen.out.begin(), gen.out.end(), '\n'), 3);
  EXPECT_NE(gen.out.find("\"prompt\":\"12+34=\""), std::string::npos) << gen.out;
}

TEST(Commands, BadArgumentsExitWithTwo) {
  ScratchDir dir("commands");
  auto bad_format = run_opd("data arith --out x.jsonl --scratchpad bogus", dir.path());
  EXPECT_EQ(bad_format.status, 2);
  EXPECT_NE(bad_format.err.find("scratchpad"), std::string::npos) << bad_format.err;
  EXPECT_FALSE(fs::exists(dir / "x.jsonl"));
  EXPECT_EQ(run_opd("frobnicate", dir.path()).status, 2);
  EXPECT_EQ(run_opd("generate --prompt x", dir.path()).status, 2);  // --model missing
  auto missing = run_opd("inspect nothing.h5", dir.path());
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.err.find("nothing.h5"), std::string::npos);
}
