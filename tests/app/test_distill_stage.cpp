// The distill stage end to end on tiny models: every objective and signal runs and logs its
// diagnostics; stopping and resuming gives the same metrics; bad distillation settings are
// refused before any work starts.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/checkpoint.hpp"
#include "io/metrics_h5.hpp"
#include "testing/process.hpp"
#include "testing/tiny_job.hpp"

using namespace opd::testing;
namespace fs = std::filesystem;

namespace {


// The metrics that do not measure time.
std::string deterministic(const nlohmann::json& row) {
  nlohmann::json j = row;
  for (auto it = row.begin(); it != row.end(); ++it)
    if (it.key().rfind("time_", 0) == 0 || it.key() == "tokens_per_second") j.erase(it.key());
  return j.dump();
}

class DistillStage : public ::testing::Test {
 protected:
  void SetUp() override { make_arith_data(dir_.path(), 120); }
  ScratchDir dir_{"distill"};
};

}  // namespace

struct ObjectiveCase {
  const char* signal;
  const char* objective;
};

class DistillObjectives : public DistillStage,
                          public ::testing::WithParamInterface<ObjectiveCase> {};

TEST_P(DistillObjectives, RunsAndLogsDiagnostics) {
  const auto& c = GetParam();
  write_file(dir_ / "job.toml", tiny_distill_job("runs/d", 3, 0, c.signal, c.objective));
  auto r = run_opd("run job.toml", dir_.path());
  ASSERT_EQ(r.status, 0) << r.err << r.out;
  auto rows = read_jsonl(dir_ / "runs/d/distill/metrics.jsonl");
  ASSERT_EQ(rows.size(), 3u);
  for (const auto& row : rows) {
    EXPECT_TRUE(row["loss"].is_number()) << row.dump();
    EXPECT_TRUE(row["kl_k1"].is_number()) << row.dump();
    EXPECT_GT(row["grad_norm"].get<double>(), 0.0) << row.dump();
    EXPECT_GT(row["response_tokens"].get<double>(), 0.0);
    EXPECT_TRUE(row["entropy_student_pos0"].is_number());
    if (std::string(c.signal) != "sampled") {
      EXPECT_GE(row["overlap_ratio"].get<double>(), 0.0);
      EXPECT_LE(row["overlap_ratio"].get<double>(), 1.0);
      EXPECT_GT(row["overlap_mass_teacher"].get<double>(), 0.0);
    } else {
      EXPECT_TRUE(row["overlap_ratio"].is_null());
    }
    if (std::string(c.signal) == "full") EXPECT_GE(row["kl_full"].get<double>(), 0.0);
  }
  EXPECT_TRUE(rows[1].contains("eval_accuracy"));
  auto h5 = opd::io::read_metrics_h5((dir_ / "runs/d/distill/metrics.h5").string());
  ASSERT_EQ(h5["loss"].size(), 3u);
  EXPECT_DOUBLE_EQ(h5["loss"][2], rows[2]["loss"].get<double>());
  auto res = nlohmann::json::parse(read_file(dir_ / "runs/d/distill/results.json"));
  EXPECT_TRUE(res.contains("accuracy_student_final"));
  EXPECT_TRUE(res.contains("accuracy_teacher"));
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, DistillObjectives,
    ::testing::Values(ObjectiveCase{"sampled", "kind = \"pg_sampled\""},
                      ObjectiveCase{"topk", "kind = \"pg_sampled\"\nbaseline = \"kl_topk\""},
                      ObjectiveCase{"topk", "kind = \"pg_topk\"\nsupport = \"union\"\nweights = \"teacher_p\""},
                      ObjectiveCase{"topk", "kind = \"topk_rkl\""},
                      ObjectiveCase{"topk", "kind = \"fkl\"\ntail = true\ngkd_lambda = 0.5"},
                      ObjectiveCase{"full", "kind = \"full_rkl\"\naggregation = \"seq_mean\""},
                      ObjectiveCase{"full", "kind = \"jsd\"\nbeta = 0.3"},
                      ObjectiveCase{"full", "kind = \"pg_sampled\"\nbaseline = \"kl_full\"\nreward_weight = 0.5\ndiscount = 0.9\nclip = 0.2"},
                      ObjectiveCase{"sampled", "kind = \"sft\""}));

TEST_F(DistillStage, StopAndResumeGivesTheSameMetrics) {
  write_file(dir_ / "full.toml", tiny_distill_job("runs/full", 6, 2));
  auto full = run_opd("run full.toml", dir_.path());
  ASSERT_EQ(full.status, 0) << full.err;
  write_file(dir_ / "split.toml", tiny_distill_job("runs/split", 6, 2));
  auto stopped = run_command("OPD_STOP_AT_STEP=3 '" + std::string(OPD_BINARY) + "' run split.toml",
                             dir_.path());
  ASSERT_EQ(stopped.status, 3) << stopped.err << stopped.out;
  auto resumed = run_opd("run split.toml", dir_.path());
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("resuming from"), std::string::npos);
  auto a = read_jsonl(dir_ / "runs/full/distill/metrics.jsonl");
  auto b = read_jsonl(dir_ / "runs/split/distill/metrics.jsonl");
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(deterministic(a[i]), deterministic(b[i])) << i;
  auto ha = opd::io::read_metrics_h5((dir_ / "runs/full/distill/metrics.h5").string());
  auto hb = opd::io::read_metrics_h5((dir_ / "runs/split/distill/metrics.h5").string());
  EXPECT_EQ(ha["loss"], hb["loss"]);
  EXPECT_EQ(ha["overlap_ratio"], hb["overlap_ratio"]);
}

// Bad distillation settings: exit 2 with one line, before any stage runs (no run directory).
class DistillBadInput : public DistillStage {
 protected:
  std::string expect_refused(const std::string& job) {
    write_file(dir_ / "job.toml", job);
    auto r = run_opd("run job.toml", dir_.path());
    EXPECT_EQ(r.status, 2) << r.err << r.out;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(dir_ / "runs/bad")) << "work started";
    return r.err;
  }
};

TEST_F(DistillBadInput, ObjectiveNeedsASignalTheJobDidNotAskFor) {
  std::string err = expect_refused(tiny_distill_job("runs/bad", 2, 0, "topk", "kind = \"full_rkl\""));
  EXPECT_NE(err.find("needs the full-vocabulary teacher signal"), std::string::npos) << err;
  err = expect_refused(tiny_distill_job("runs/bad", 2, 0, "sampled", "kind = \"pg_topk\""));
  EXPECT_NE(err.find("top-k"), std::string::npos) << err;
  err = expect_refused(tiny_distill_job("runs/bad", 2, 0, "topk", "kind = \"pg_sampled\"\nbaseline = \"kl_full\""));
  EXPECT_NE(err.find("kl_full"), std::string::npos) << err;
}

TEST_F(DistillBadInput, MissingTeacher) {
  std::string job = tiny_distill_job("runs/bad", 2);
  job.replace(job.find("teacher = \"@teacher\""), 20, "teacher = \"nowhere.h5\"");
  std::string err = expect_refused(job);
  EXPECT_NE(err.find("nowhere.h5"), std::string::npos) << err;
}

TEST_F(DistillBadInput, TeacherOfAnotherVocabulary) {
  std::string job = tiny_distill_job("runs/bad", 2);
  job.replace(job.find("[model.teacher]\n"), 16, "[model.teacher]\nvocab_size = 128\n");
  std::string err = expect_refused(job);
  EXPECT_NE(err.find("vocabular"), std::string::npos) << err;
}

TEST_F(DistillBadInput, TeacherCheckpointOfAnotherTokenizer) {
  // A real checkpoint, rewritten with another tokenizer's identity.
  write_file(dir_ / "ok.toml", tiny_job("runs/ok", 2));
  auto ok = run_opd("run ok.toml", dir_.path());
  ASSERT_EQ(ok.status, 0) << ok.err;
  {
    opd::io::CheckpointReader in((dir_ / "runs/ok/pretrain/checkpoints/step_00000002.h5").string());
    opd::io::CheckpointWriter out((dir_ / "other.h5").string());
    for (const auto& d : in.list()) {
      if (d.name == "config/tokenizer") continue;
      if (d.is_tensor) out.write_tensor(d.name, in.read_tensor(d.name));
      else if (d.name.rfind("config/model/", 0) == 0 && (d.name.find("theta") != std::string::npos || d.name.find("eps") != std::string::npos || d.name.find("std") != std::string::npos))
        out.write_double(d.name, in.read_double(d.name));
      else if (d.name.rfind("config/model/", 0) == 0 || d.name.rfind("state/", 0) == 0 || d.name == "optimizer/step")
        out.write_int(d.name, in.read_int(d.name));
    }
    out.write_string("config/tokenizer", "gpt2-bpe vocab_size=50257");
    out.commit();
  }
  std::string job = tiny_distill_job("runs/bad", 2);
  job.replace(job.find("teacher = \"@teacher\""), 20, "teacher = \"other.h5\"");
  std::string err = expect_refused(job);
  EXPECT_NE(err.find("tokenizer"), std::string::npos) << err;
}
