// Data parallelism over MPI ranks (mpirun -np 2): the training losses equal the single-rank run,
// the checkpoint is written once with its layout, a stop under MPI resumes exactly, and a layout
// that does not fit the world is refused once, with every rank exiting cleanly.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/checkpoint.hpp"
#include "testing/process.hpp"
#include "testing/tiny_job.hpp"

using namespace opd::testing;
namespace fs = std::filesystem;


TEST(DataParallel, TwoRanksReproduceOneRank) {
  ScratchDir dir("dp");
  make_arith_data(dir.path(), 200);
  write_file(dir / "one.toml", tiny_job("runs/one", 8, 4));
  write_file(dir / "two.toml", tiny_job("runs/two", 8, 4));
  auto one = run_opd("run one.toml", dir.path());
  ASSERT_EQ(one.status, 0) << one.err;
  auto two = run_mpi("run two.toml", dir.path());
  ASSERT_EQ(two.status, 0) << two.err << two.out;
  const auto a = read_jsonl(dir / "runs/one/pretrain/metrics.jsonl");
  const auto b = read_jsonl(dir / "runs/two/pretrain/metrics.jsonl");
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);  // written once, by the root
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double la = a[i]["loss"].get<double>(), lb = b[i]["loss"].get<double>();
    EXPECT_LE(std::abs(la - lb), 1e-5 * std::abs(la)) << "step " << i + 1;
    const double ga = a[i]["grad_norm"].get<double>(), gb = b[i]["grad_norm"].get<double>();
    EXPECT_LE(std::abs(ga - gb), 1e-5 * std::abs(ga)) << "step " << i + 1;
  }
  opd::io::CheckpointReader ck((dir / "runs/two/pretrain/checkpoints/step_00000008.h5").string());
  EXPECT_EQ(ck.attribute_string("layout"), "tp1.pp1.dp2");
  // The evaluation is shared between the ranks and gives the same result.
  auto eval = [&](const char* run) {
    return nlohmann::json::parse(read_file(dir / run / "eval/results.json"));
  };
  EXPECT_EQ(eval("runs/one")["correct"], eval("runs/two")["correct"]);
  EXPECT_EQ(eval("runs/one")["mean_response_tokens"], eval("runs/two")["mean_response_tokens"]);
  // The progress lines come from the root only.
  EXPECT_EQ(std::count(two.out.begin(), two.out.end(), '\n'),
            std::count(one.out.begin(), one.out.end(), '\n'));
}

TEST(DataParallel, StopAndResumeUnderMpi) {
  ScratchDir dir("dp-resume");
  make_arith_data(dir.path(), 200);
  write_file(dir / "full.toml", tiny_job("runs/full", 8, 4));
  write_file(dir / "split.toml", tiny_job("runs/split", 8, 4));
  ASSERT_EQ(run_mpi("run full.toml", dir.path()).status, 0);
  auto stopped = run_mpi("run split.toml", dir.path(), "OPD_STOP_AT_STEP=5 ");
  ASSERT_EQ(stopped.status, 3) << stopped.err << stopped.out;
  auto resumed = run_mpi("run split.toml", dir.path());
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  const auto a = read_jsonl(dir / "runs/full/pretrain/metrics.jsonl");
  const auto b = read_jsonl(dir / "runs/split/pretrain/metrics.jsonl");
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i]["loss"].dump(), b[i]["loss"].dump()) << i;
}

TEST(DataParallel, ImpossibleLayoutIsOneClearError) {
  ScratchDir dir("dp-bad");
  make_arith_data(dir.path(), 50);
  write_file(dir / "job.toml", tiny_job("runs/bad", 2));
  auto r = run_mpi("run job.toml --set parallel.student.dp=3", dir.path());
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(error_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("needs 3 ranks, the job runs on 2"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "runs/bad"));
  auto pp = run_mpi("run job.toml --set parallel.student.pp=2 --set parallel.student.dp=1", dir.path());
  EXPECT_EQ(pp.status, 2);
  EXPECT_EQ(error_lines(pp.err), 1) << pp.err;  // [model.tiny] has one layer
  EXPECT_NE(pp.err.find("n_layers = 1 cannot fill parallel.student.pp = 2"), std::string::npos)
      << pp.err;
  auto batch = run_mpi("run job.toml --set stage.pretrain.batch_size=7", dir.path());
  EXPECT_EQ(batch.status, 2);
  EXPECT_NE(batch.err.find("does not split over 2"), std::string::npos) << batch.err;
  EXPECT_EQ(error_lines(batch.err), 1) << batch.err;
}

TEST(DataParallel, DistillOnTwoRanksReproducesOneRank) {
  ScratchDir dir("dp-distill");
  make_arith_data(dir.path(), 200);
  for (const char* run : {"one", "two"}) {
    std::string job = tiny_distill_job(std::string("runs/") + run, 4, 2, "topk",
                                       "kind = \"pg_sampled\"\nbaseline = \"kl_topk\"\n"
                                       "reward_weight = 0.5\naggregation = \"seq_mean\"");
    job.replace(job.find("prompts_per_step = 3"), 20, "prompts_per_step = 4");
    write_file(dir / (std::string(run) + ".toml"), job);
  }
  auto one = run_opd("run one.toml", dir.path());
  ASSERT_EQ(one.status, 0) << one.err;
  auto two = run_mpi("run two.toml", dir.path());
  ASSERT_EQ(two.status, 0) << two.err << two.out;
  const auto a = read_jsonl(dir / "runs/one/distill/metrics.jsonl");
  const auto b = read_jsonl(dir / "runs/two/distill/metrics.jsonl");
  ASSERT_EQ(a.size(), 4u);
  // fp32 arithmetic over differently shaped batches (OpenBLAS picks other kernels for other row
  // counts): equal within tolerance, the sampled tokens exactly.
  expect_same_run(a, b);
  opd::io::CheckpointReader ck((dir / "runs/two/distill/checkpoints/step_00000004.h5").string());
  EXPECT_EQ(ck.attribute_string("layout"), "tp1.pp1.dp2");
  auto res = [&](const char* run) {
    return nlohmann::json::parse(read_file(dir / run / "distill/results.json"));
  };
  EXPECT_EQ(res("runs/one")["accuracy_teacher"], res("runs/two")["accuracy_teacher"]);
  EXPECT_EQ(res("runs/one")["accuracy_student_final"], res("runs/two")["accuracy_student_final"]);
}

TEST(DataParallel, ZeroShardsOptimizerStateAndResumesOnOneRank) {
  ScratchDir dir("dp-zero");
  make_arith_data(dir.path(), 200);
  write_file(dir / "plain.toml", tiny_job("runs/plain", 8, 4));
  write_file(dir / "zero.toml", tiny_job("runs/zero", 8, 4));
  write_file(dir / "move.toml", tiny_job("runs/move", 8, 4));
  ASSERT_EQ(run_mpi("run plain.toml", dir.path()).status, 0);
  auto zero = run_mpi("run zero.toml --set parallel.zero=1", dir.path());
  ASSERT_EQ(zero.status, 0) << zero.err;
  // ZeRO-1 changes where AdamW runs, not what it computes.
  const auto a = read_jsonl(dir / "runs/plain/pretrain/metrics.jsonl");
  const auto b = read_jsonl(dir / "runs/zero/pretrain/metrics.jsonl");
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i]["loss"].dump(), b[i]["loss"].dump()) << i;
  // Its checkpoint holds every moment at full shape, equal to the unsharded run's.
  opd::io::CheckpointReader pz((dir / "runs/zero/pretrain/checkpoints/step_00000008.h5").string());
  opd::io::CheckpointReader pp((dir / "runs/plain/pretrain/checkpoints/step_00000008.h5").string());
  int moments = 0;
  for (const auto& d : pp.list())
    if (d.name.rfind("optimizer/exp_avg", 0) == 0) {
      ++moments;
      EXPECT_EQ(pz.read_tensor(d.name).to_vector(), pp.read_tensor(d.name).to_vector()) << d.name;
    }
  EXPECT_GT(moments, 10);
  // Written with ZeRO-1 at dp2, resumed at dp1: the continuation follows the dp2 run.
  auto stopped = run_mpi("run move.toml --set parallel.zero=1", dir.path(), "OPD_STOP_AT_STEP=5 ");
  ASSERT_EQ(stopped.status, 3) << stopped.err;
  auto resumed = run_opd("run move.toml", dir.path());
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  const auto c = read_jsonl(dir / "runs/move/pretrain/metrics.jsonl");
  ASSERT_EQ(c.size(), a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = a[i]["loss"].get<double>(), y = c[i]["loss"].get<double>();
    EXPECT_LE(std::abs(x - y), 1e-5 * std::abs(x)) << "step " << i + 1;
  }
}

// Split placement: the teacher on its own ranks, scoring over point-to-point messages.
TEST(SplitPlacement, TeacherOnItsOwnRankGivesTheColocatedRun) {
  ScratchDir dir("split");
  make_arith_data(dir.path(), 200);
  for (const char* signal : {"topk", "full"}) {
    const std::string one = std::string("runs/one_") + signal, two = std::string("runs/split_") + signal;
    write_file(dir / "one.toml", tiny_distill_job(one, 4, 2, signal, "kind = \"fkl\""));
    write_file(dir / "split.toml", tiny_distill_job(two, 4, 2, signal, "kind = \"fkl\""));
    ASSERT_EQ(run_opd("run one.toml", dir.path()).status, 0);
    auto r = run_mpi("run split.toml --set parallel.placement=split --set parallel.student.dp=1 "
                     "--set parallel.teacher.dp=1",
                     dir.path());
    ASSERT_EQ(r.status, 0) << r.err << r.out;
    const auto a = read_jsonl(dir / one / "distill/metrics.jsonl");
    const auto b = read_jsonl(dir / two / "distill/metrics.jsonl");
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i)
      for (const auto& [key, v] : a[i].items())
        if (key.rfind("time_", 0) != 0 && key != "tokens_per_second")
          EXPECT_EQ(v, b[i][key]) << signal << " " << key << " at step " << i + 1;
  }
}

TEST(SplitPlacement, TwoStudentsShareATeacherAndResume) {
  ScratchDir dir("split-dp");
  make_arith_data(dir.path(), 200);
  const std::string layout =
      " --set parallel.placement=split --set parallel.student.dp=2 --set parallel.teacher.dp=1";
  for (const char* run : {"one", "full", "cut"}) {
    std::string job = tiny_distill_job(std::string("runs/") + run, 4, 2);
    job.replace(job.find("prompts_per_step = 3"), 20, "prompts_per_step = 4");
    // Pretraining stages of 3 steps end before OPD_STOP_AT_STEP=3 can stop them, so the stop
    // below lands in the distill stage.
    job.replace(job.find("steps = 6"), 9, "steps = 3");
    write_file(dir / (std::string(run) + ".toml"), job);
  }
  ASSERT_EQ(run_opd("run one.toml", dir.path()).status, 0);
  auto full = run_mpi("run full.toml" + layout, dir.path(), "", 3);
  ASSERT_EQ(full.status, 0) << full.err << full.out;
  const auto a = read_jsonl(dir / "runs/one/distill/metrics.jsonl");
  const auto b = read_jsonl(dir / "runs/full/distill/metrics.jsonl");
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["response_tokens"], b[i]["response_tokens"]);
    const double x = a[i]["loss"].get<double>(), y = b[i]["loss"].get<double>();
    EXPECT_LE(std::abs(x - y), 1e-5 * std::max(1.0, std::abs(x))) << "step " << i + 1;
  }
  // Stopped at step 3 and resumed, still split: the same metrics as the uninterrupted split run.
  auto stopped = run_mpi("run cut.toml" + layout, dir.path(), "OPD_STOP_AT_STEP=3 ", 3);
  ASSERT_EQ(stopped.status, 3) << stopped.err << stopped.out;
  EXPECT_NE(stopped.out.find("distill: stopping at step 3"), std::string::npos) << stopped.out;
  auto resumed = run_mpi("run cut.toml" + layout, dir.path(), "", 3);
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  const auto c = read_jsonl(dir / "runs/cut/distill/metrics.jsonl");
  ASSERT_EQ(c.size(), b.size());
  for (std::size_t i = 0; i < b.size(); ++i) EXPECT_EQ(b[i]["loss"], c[i]["loss"]) << i;
}
