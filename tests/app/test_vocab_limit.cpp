// Models whose vocabulary is larger than the tokenizer's (an imported embedding with padded rows):
// every token opd samples — student rollouts, evaluations, teacher generation, `opd generate` —
// is an id the tokenizer has. The char tokenizer has 100 ids and its decode refuses any id past
// them (an Input error), and every one of these paths decodes each response it samples; the
// barely trained models here still give the 60 untrained rows past 100 much of their mass, so
// without the limit the runs below fail on the first such token.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "testing/process.hpp"
#include "testing/tiny_job.hpp"

using namespace opd::testing;
namespace fs = std::filesystem;

namespace {

// tiny_distill_job with 160-row embeddings (the char tokenizer has 100 ids), a teacher_generate
// stage between the pretraining and the distillation whose stop texts end most responses early
// (it fails when it keeps none), and a sampling eval at the end.
std::string padded_job() {
  std::string job = tiny_distill_job("runs/v", 3);
  job = edit(job, "[model.teacher]\n", "[model.teacher]\nvocab_size = 160\n");
  job = edit(job, "[model.student]\n", "[model.student]\nvocab_size = 160\n");
  job = edit(job, "[[stage]]\nname = \"distill\"",
             "[[stage]]\nname = \"samples\"\nkind = \"teacher_generate\"\nmodel = \"@teacher\"\n"
             "data = \"test.jsonl\"\nlimit = 16\nsamples = 2\nmax_new_tokens = 16\n"
             "temperature = 1.0\ntop_p = 1.0\nrequire_marker = false\n"
             "stop = [\"0\", \"1\", \"2\", \"3\", \"4\", \"5\", \"6\", \"7\", \"8\", \"9\", \" \", \"=\"]\n\n"
             "[[stage]]\nname = \"distill\"");
  job += "\n[[stage]]\nname = \"final_eval\"\nkind = \"eval\"\nmodel = \"@distill\"\n"
         "data = \"test.jsonl\"\nlimit = 8\nsamples = 4\ntemperature = 1.0\nmax_new_tokens = 16\n";
  return job;
}

}  // namespace

TEST(VocabLimit, JobsOnAPaddedVocabularySampleTokenizerIdsOnly) {
  ScratchDir dir("vocab-limit");
  make_arith_data(dir.path(), 120);
  write_file(dir / "job.toml", padded_job());
  auto r = run_opd("run job.toml", dir.path());
  ASSERT_EQ(r.status, 0) << r.err << r.out;

  // The rollouts were sampled and scored (the teacher saw only decodable responses).
  const auto rows = read_jsonl(dir / "runs/v/distill/metrics.jsonl");
  ASSERT_EQ(rows.size(), 3u);
  for (const auto& row : rows) EXPECT_GT(row["response_tokens"].get<double>(), 0.0) << row.dump();
  // Teacher generation sampled all its responses (each decoded, kept or not).
  const auto summary = nlohmann::json::parse(read_file(dir / "runs/v/samples/results.json"));
  EXPECT_EQ(summary["responses"].get<int>(), 32);
  EXPECT_GT(summary["kept"].get<int>(), 0);
  // The sampling eval wrote every sample.
  const auto eval = nlohmann::json::parse(read_file(dir / "runs/v/final_eval/results.json"));
  EXPECT_EQ(eval["examples"].get<int>(), 8);
  EXPECT_GT(eval["mean_response_tokens"].get<double>(), 0.0);

  // opd generate on the least trained model, sampling at temperature 1.
  fs::path ckpt;
  for (const auto& e : fs::directory_iterator(dir / "runs/v/student/checkpoints"))
    if (e.path().extension() == ".h5") ckpt = e.path();
  ASSERT_FALSE(ckpt.empty());
  auto gen = run_opd("generate --model " + ckpt.string() +
                         " --prompt 12+34= --prompt 7+8= --samples 8 --temperature 1 "
                         "--max-new-tokens 16",
                     dir.path());
  ASSERT_EQ(gen.status, 0) << gen.err << gen.out;
  std::istringstream lines(gen.out);
  std::string line;
  int n = 0, tokens = 0;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    tokens += j["tokens"].get<int>();
    ++n;
  }
  EXPECT_EQ(n, 16);
  EXPECT_GT(tokens, 16);
}
