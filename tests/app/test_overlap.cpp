// distill overlap (split placement): the teacher scores batch k + 1 while the student updates on
// batch k. The first step equals the plain run's (its batch comes from the same model), later
// batches are sampled one update early; a stop checkpoints the batch in flight and the resumed
// run is bit-identical to the uninterrupted one; colocated placement refuses the option.
#include <gtest/gtest.h>

#include <filesystem>

#include "io/checkpoint.hpp"
#include "testing/process.hpp"
#include "testing/tiny_job.hpp"

using namespace opd::testing;
namespace fs = std::filesystem;

namespace {

const char* kSplit =
    " --set parallel.placement=split --set parallel.student.dp=1 --set parallel.teacher.dp=1";

std::string job(const std::string& run, bool overlap) {
  std::string j = edit(tiny_distill_job(run, 5, 2, "topk", "kind = \"pg_topk\""), "steps = 6",
                       "steps = 3");
  return overlap ? edit(j, "signal = \"topk\"", "signal = \"topk\"\noverlap = 1") : j;
}

}  // namespace

TEST(Overlap, TeacherScoresAheadAndResumesExactly) {
  ScratchDir dir("overlap");
  make_arith_data(dir.path(), 200);
  write_file(dir / "plain.toml", job("runs/plain", false));
  for (const char* run : {"full", "cut"}) write_file(dir / (std::string(run) + ".toml"), job(std::string("runs/") + run, true));
  auto plain = run_mpi(std::string("run plain.toml") + kSplit, dir.path());
  ASSERT_EQ(plain.status, 0) << plain.err;
  auto full = run_mpi(std::string("run full.toml") + kSplit, dir.path());
  ASSERT_EQ(full.status, 0) << full.err << full.out;
  const auto a = read_jsonl(dir / "runs/plain/distill/metrics.jsonl");
  const auto b = read_jsonl(dir / "runs/full/distill/metrics.jsonl");
  ASSERT_EQ(a.size(), 5u);
  ASSERT_EQ(b.size(), 5u);
  // Step 1 learns from the same batch and reply.
  for (const char* key : {"loss", "kl_k1", "overlap_ratio", "response_tokens", "grad_norm"})
    EXPECT_EQ(a[0][key], b[0][key]) << key;
  // From step 2 on the batches were sampled before the previous update: other numbers.
  bool differs = false;
  for (std::size_t i = 1; i < a.size(); ++i) differs = differs || a[i]["loss"] != b[i]["loss"];
  EXPECT_TRUE(differs);
  for (const auto& row : b) EXPECT_TRUE(row["loss"].is_number()) << row.dump();

  // Stopped at step 3: the checkpoint holds the batch of step 4 (sent to the teacher); the
  // resumed run sends it again and continues exactly.
  auto stopped = run_mpi(std::string("run cut.toml") + kSplit, dir.path(), "OPD_STOP_AT_STEP=3 ");
  ASSERT_EQ(stopped.status, 3) << stopped.err << stopped.out;
  opd::io::CheckpointReader ck((dir / "runs/cut/distill/checkpoints/step_00000003.h5").string());
  EXPECT_EQ(ck.read_int("state/inflight/count"), 1);
  EXPECT_NE(ck.read_string("state/inflight/0").find("\"logmu\""), std::string::npos);
  auto resumed = run_mpi(std::string("run cut.toml") + kSplit, dir.path());
  ASSERT_EQ(resumed.status, 0) << resumed.err << resumed.out;
  const auto c = read_jsonl(dir / "runs/cut/distill/metrics.jsonl");
  ASSERT_EQ(c.size(), b.size());
  for (std::size_t i = 0; i < b.size(); ++i)
    for (const auto& [key, v] : b[i].items())
      if (key.rfind("time_", 0) != 0 && key != "tokens_per_second")
        EXPECT_EQ(v, c[i][key]) << key << " at step " << i + 1;
}

TEST(Overlap, ColocatedPlacementRefusesIt) {
  ScratchDir dir("overlap-bad");
  make_arith_data(dir.path(), 50);
  write_file(dir / "job.toml", job("runs/bad", true));
  auto r = run_opd("run job.toml", dir.path());
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("overlap = 1"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "runs/bad"));
}
