// Save → stop → resume gives exactly the uninterrupted run (DESIGN.md §7): losses bit-identical,
// the stop exits with status 3, finished stages are skipped on rerun, and an unpublished *.tmp
// checkpoint left by a killed write is never loaded.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "testing/process.hpp"
#include "testing/tiny_job.hpp"

using namespace opd::testing;
namespace fs = std::filesystem;

namespace {

// "step loss grad_norm" for every line of a metrics file, as written (exact decimal text).
std::vector<std::string> loss_lines(const fs::path& metrics) {
  std::vector<std::string> rows;
  for (const auto& j : read_jsonl(metrics))
    rows.push_back(j["step"].dump() + " " + j["loss"].dump() + " " + j["grad_norm"].dump());
  return rows;
}

}  // namespace

TEST(Resume, StopAndResumeIsBitIdentical) {
  ScratchDir dir("resume");
  make_arith_data(dir.path(), 200);
  write_file(dir / "job.toml", tiny_job("runs/full", 12, 4));
  auto full = run_opd("run job.toml", dir.path());
  ASSERT_EQ(full.status, 0) << full.err;
  const auto want = loss_lines(dir / "runs/full/pretrain/metrics.jsonl");
  ASSERT_EQ(want.size(), 12u);

  // Stopped at the boundary before step 7 (as a signal there would): checkpoint and status 3.
  write_file(dir / "job2.toml", tiny_job("runs/split", 12, 4));
  auto stopped = run_command("OPD_STOP_AT_STEP=7 '" + std::string(OPD_BINARY) + "' run job2.toml",
                             dir.path());
  ASSERT_EQ(stopped.status, 3) << stopped.err << stopped.out;
  EXPECT_TRUE(fs::exists(dir / "runs/split/pretrain/checkpoints/step_00000007.h5"));
  EXPECT_FALSE(fs::exists(dir / "runs/split/pretrain/DONE"));
  EXPECT_FALSE(fs::exists(dir / "runs/split/eval"));

  // A killed write of a later checkpoint leaves a .tmp that must be ignored.
  write_file(dir / "runs/split/pretrain/checkpoints/step_00000011.h5.tmp", "half-written");
  auto resumed = run_opd("run job2.toml", dir.path());
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("resuming from"), std::string::npos) << resumed.out;
  EXPECT_NE(resumed.out.find("step_00000007.h5"), std::string::npos) << resumed.out;
  EXPECT_EQ(loss_lines(dir / "runs/split/pretrain/metrics.jsonl"), want);
  // The evaluated model is the same, so the evaluation is too.
  auto acc = [&](const char* run) {
    return nlohmann::json::parse(read_file(dir / run / "eval/results.json"))["correct"];
  };
  EXPECT_EQ(acc("runs/split"), acc("runs/full"));

  // Rerunning a finished job skips every stage.
  auto again = run_opd("run job2.toml", dir.path());
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_NE(again.out.find("stage pretrain is done, skipping"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("stage eval is done, skipping"), std::string::npos) << again.out;
}
