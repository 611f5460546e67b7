// Tensor and pipeline parallelism end to end (mpirun -np 2 and 4): pretraining and distillation
// at tp2, tp2 x dp2, pp2, tp2 x pp2 and in split placement with a tp2 or pp2 teacher reproduce
// the single-rank run (losses, gradient norms and diagnostics within fp32 tolerance, the sampled
// tokens exactly); the checkpoint holds global shapes and loads on one rank; a stop at tp2 or
// pp2 resumes bit-identically on the same layout and within tolerance at tp1; a layout the model
// cannot split is one clear error.
#include <gtest/gtest.h>

#include <filesystem>

#include "io/checkpoint.hpp"
#include "testing/process.hpp"
#include "testing/tiny_job.hpp"

using namespace opd::testing;
namespace fs = std::filesystem;

namespace {

// The tiny distillation job with 4 prompts per step (so that dp2 splits them) and two layers in
// both models (so that pp2 splits them).
std::string distill_job(const std::string& run, const std::string& signal,
                        const std::string& objective) {
  std::string job = edit(tiny_distill_job(run, 4, 2, signal, objective), "prompts_per_step = 3",
                         "prompts_per_step = 4");
  return edit(edit(job, "n_layers = 1", "n_layers = 2"), "n_layers = 1", "n_layers = 2");
}

const char* kTp2 = " --set parallel.student.tp=2 --set parallel.teacher.tp=2";
const char* kPp2 = " --set parallel.student.pp=2 --set parallel.teacher.pp=2";

void expect_same_stages(const fs::path& a, const fs::path& b) {
  for (const char* stage : {"teacher/metrics.jsonl", "student/metrics.jsonl", "distill/metrics.jsonl"}) {
    SCOPED_TRACE(stage);
    expect_same_run(read_jsonl(a / stage), read_jsonl(b / stage));
  }
}

}  // namespace

TEST(ModelParallelRun, Tp2ReproducesOneRank) {
  ScratchDir dir("tp2");
  make_arith_data(dir.path(), 200);
  // gkd_lambda: some steps learn from the dataset's responses, whose student top-k comes from a
  // scoring pass (top-k across the vocabulary shards).
  const std::string objective =
      "kind = \"pg_sampled\"\nbaseline = \"kl_topk\"\nreward_weight = 0.5\ngkd_lambda = 0.5";
  write_file(dir / "one.toml", distill_job("runs/one", "topk", objective));
  write_file(dir / "tp2.toml", distill_job("runs/tp2", "topk", objective));
  auto one = run_opd("run one.toml", dir.path());
  ASSERT_EQ(one.status, 0) << one.err;
  auto tp2 = run_mpi(std::string("run tp2.toml") + kTp2, dir.path());
  ASSERT_EQ(tp2.status, 0) << tp2.err << tp2.out;
  expect_same_stages(dir / "runs/one", dir / "runs/tp2");

  // One file per checkpoint, written by both ranks, at global shapes equal to the one-rank run's.
  const std::string last = "distill/checkpoints/step_00000004.h5";
  opd::io::CheckpointReader a((dir / "runs/one" / last).string());
  opd::io::CheckpointReader b((dir / "runs/tp2" / last).string());
  EXPECT_EQ(b.attribute_string("layout"), "tp2.pp1.dp1");
  int tensors = 0;
  for (const auto& d : a.list()) {
    if (!d.is_tensor) continue;
    ++tensors;
    ASSERT_EQ(b.info(d.name).shape, d.shape) << d.name;
    b.verify(d.name);
    const auto x = a.read_tensor(d.name).to_vector(), y = b.read_tensor(d.name).to_vector();
    double worst = 0;
    for (std::size_t i = 0; i < x.size(); ++i) worst = std::max(worst, double(std::abs(x[i] - y[i])));
    EXPECT_LE(worst, 1e-4) << d.name;
  }
  EXPECT_GT(tensors, 20);
}

TEST(ModelParallelRun, Tp2TimesDp2WithFullSignalReproducesOneRank) {
  ScratchDir dir("tp2dp2");
  make_arith_data(dir.path(), 200);
  const std::string objective = "kind = \"jsd\"\nbeta = 0.3";
  write_file(dir / "one.toml", distill_job("runs/one", "full", objective));
  write_file(dir / "four.toml", distill_job("runs/four", "full", objective));
  auto one = run_opd("run one.toml", dir.path());
  ASSERT_EQ(one.status, 0) << one.err;
  auto four = run_mpi(std::string("run four.toml") + kTp2, dir.path(), "", 4);
  ASSERT_EQ(four.status, 0) << four.err << four.out;
  expect_same_stages(dir / "runs/one", dir / "runs/four");
  opd::io::CheckpointReader ck((dir / "runs/four/distill/checkpoints/step_00000004.h5").string());
  EXPECT_EQ(ck.attribute_string("layout"), "tp2.pp1.dp2");
}

TEST(ModelParallelRun, SplitPlacementWithATp2OrPp2Teacher) {
  ScratchDir dir("split-tp");
  make_arith_data(dir.path(), 200);
  const std::string split = " --set parallel.placement=split --set parallel.student.dp=2 "
                            "--set parallel.student.tp=1 --set parallel.student.pp=1 "
                            "--set parallel.teacher.dp=1";
  for (const auto& [signal, teacher] :
       {std::pair{"topk", "tp"}, std::pair{"full", "tp"}, std::pair{"topk", "pp"}}) {
    SCOPED_TRACE(std::string(signal) + " " + teacher);
    const std::string one = std::string("runs/one_") + signal + teacher;
    const std::string two = std::string("runs/split_") + signal + teacher;
    write_file(dir / "one.toml", distill_job(one, signal, "kind = \"fkl\""));
    write_file(dir / "split.toml", distill_job(two, signal, "kind = \"fkl\""));
    ASSERT_EQ(run_opd("run one.toml", dir.path()).status, 0);
    auto r = run_mpi("run split.toml" + split + " --set parallel.teacher." + teacher + "=2",
                     dir.path(), "", 4);
    ASSERT_EQ(r.status, 0) << r.err << r.out;
    expect_same_run(read_jsonl(dir / one / "distill/metrics.jsonl"),
                    read_jsonl(dir / two / "distill/metrics.jsonl"));
  }
}

TEST(ModelParallelRun, SplitPlacementWithATp2StudentOnTheFullSignal) {
  // The student's ranks apply the teacher's whole head to their own vocabulary columns.
  ScratchDir dir("split-tp-student");
  make_arith_data(dir.path(), 200);
  write_file(dir / "one.toml", distill_job("runs/one", "full", "kind = \"full_rkl\""));
  write_file(dir / "split.toml", distill_job("runs/split", "full", "kind = \"full_rkl\""));
  ASSERT_EQ(run_opd("run one.toml", dir.path()).status, 0);
  auto r = run_mpi("run split.toml --set parallel.placement=split --set parallel.student.tp=2 "
                   "--set parallel.student.dp=1 --set parallel.teacher.tp=1 --set parallel.teacher.dp=1",
                   dir.path(), "", 3);
  ASSERT_EQ(r.status, 0) << r.err << r.out;
  expect_same_run(read_jsonl(dir / "runs/one/distill/metrics.jsonl"),
                  read_jsonl(dir / "runs/split/distill/metrics.jsonl"));
}

TEST(ModelParallelRun, Pp2ReproducesOneRank) {
  ScratchDir dir("pp2");
  make_arith_data(dir.path(), 200);
  const std::string objective = "kind = \"topk_rkl\"\nreward_weight = 0.5";
  write_file(dir / "one.toml", distill_job("runs/one", "topk", objective));
  write_file(dir / "pp2.toml", distill_job("runs/pp2", "topk", objective));
  ASSERT_EQ(run_opd("run one.toml", dir.path()).status, 0);
  auto pp2 = run_mpi(std::string("run pp2.toml") + kPp2, dir.path());
  ASSERT_EQ(pp2.status, 0) << pp2.err << pp2.out;
  expect_same_stages(dir / "runs/one", dir / "runs/pp2");
  opd::io::CheckpointReader ck((dir / "runs/pp2/distill/checkpoints/step_00000004.h5").string());
  EXPECT_EQ(ck.attribute_string("layout"), "tp1.pp2.dp1");
  for (const auto& d : ck.list()) ck.verify(d.name);
}

TEST(ModelParallelRun, Tp2TimesPp2WithFullSignalReproducesOneRank) {
  ScratchDir dir("tp2pp2");
  make_arith_data(dir.path(), 200);
  const std::string objective = "kind = \"full_rkl\"";
  write_file(dir / "one.toml", distill_job("runs/one", "full", objective));
  write_file(dir / "four.toml", distill_job("runs/four", "full", objective));
  ASSERT_EQ(run_opd("run one.toml", dir.path()).status, 0);
  auto four = run_mpi(std::string("run four.toml") + kTp2 + kPp2, dir.path(), "", 4);
  ASSERT_EQ(four.status, 0) << four.err << four.out;
  expect_same_stages(dir / "runs/one", dir / "runs/four");
}

// A stop under `layout` resumes bit-identically under it, and within tolerance on one rank.
static void stop_and_resume(const std::string& tag, const std::string& layout) {
  ScratchDir dir(tag);
  make_arith_data(dir.path(), 200);
  for (const char* run : {"full", "same", "moved"})
    write_file(dir / (std::string(run) + ".toml"),
               edit(distill_job(std::string("runs/") + run, "topk", "kind = \"pg_topk\""),
                    "steps = 6", "steps = 3"));
  ASSERT_EQ(run_mpi("run full.toml" + layout, dir.path()).status, 0);
  for (const char* run : {"same", "moved"}) {
    auto stopped = run_mpi(std::string("run ") + run + ".toml" + layout, dir.path(), "OPD_STOP_AT_STEP=3 ");
    ASSERT_EQ(stopped.status, 3) << stopped.err << stopped.out;
    EXPECT_NE(stopped.out.find("distill: stopping at step 3"), std::string::npos) << stopped.out;
  }
  auto same = run_mpi("run same.toml" + layout, dir.path());
  ASSERT_EQ(same.status, 0) << same.err;
  auto moved = run_opd("run moved.toml", dir.path());
  ASSERT_EQ(moved.status, 0) << moved.err;
  const auto a = read_jsonl(dir / "runs/full/distill/metrics.jsonl");
  const auto b = read_jsonl(dir / "runs/same/distill/metrics.jsonl");
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    for (const auto& [key, v] : a[i].items())
      if (key.rfind("time_", 0) != 0 && key != "tokens_per_second")
        EXPECT_EQ(v, b[i][key]) << key << " at step " << i + 1;
  expect_same_run(a, read_jsonl(dir / "runs/moved/distill/metrics.jsonl"));
}

TEST(ModelParallelRun, StopAtTp2ResumesExactlyAtTp2AndCloselyAtTp1) { stop_and_resume("tp2-resume", kTp2); }
TEST(ModelParallelRun, StopAtPp2ResumesExactlyAtPp2AndCloselyAtPp1) { stop_and_resume("pp2-resume", kPp2); }

TEST(ModelParallelRun, ALayoutTheModelCannotSplitIsOneClearError) {
  ScratchDir dir("tp-bad");
  make_arith_data(dir.path(), 50);
  write_file(dir / "job.toml", tiny_job("runs/bad", 2));
  // [model.tiny] has n_heads = 2.
  auto r = run_mpi("run job.toml --set parallel.student.tp=4", dir.path(), "", 4);
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_EQ(error_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("n_heads = 2 does not divide by parallel.student.tp = 4"), std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir / "runs/bad"));
}
