// End to end: the shipped pretraining job (jobs/pretrain_arith.toml), with a smaller step budget,
// trains a tiny model from scratch to >= 95% exact match on held-out 2-3 digit additions with a
// scratchpad (fixed seeds; about a minute on one core).
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "testing/process.hpp"

using namespace opd::testing;
namespace fs = std::filesystem;

TEST(ArithTraining, PretrainJobReachesNinetyFivePercent) {
  ScratchDir dir("arith-training");
  fs::create_directories(dir / "inputs/generated");
  // The data commands of the job file's header.
  auto train = run_opd("data arith --out inputs/generated/arith_train.jsonl --count 20000 --seed 1 "
                       "--min-digits 1 --max-digits 3 --scratchpad steps",
                       dir.path());
  ASSERT_EQ(train.status, 0) << train.err;
  auto test = run_opd("data arith --out inputs/generated/arith_test.jsonl --count 300 --seed 2 "
                      "--min-digits 2 --max-digits 3 --scratchpad steps",
                      dir.path());
  ASSERT_EQ(test.status, 0) << test.err;

  const std::string job = std::string(OPD_SOURCE_DIR) + "/jobs/pretrain_arith.toml";
  auto r = run_opd("run '" + job + "' --set run.dir=runs/t --set stage.pretrain.steps=900",
                   dir.path());
  ASSERT_EQ(r.status, 0) << r.err << r.out;

  auto results = nlohmann::json::parse(read_file(dir / "runs/t/eval/results.json"));
  EXPECT_EQ(results["examples"].get<int>(), 300);
  EXPECT_GE(results["accuracy"].get<double>(), 0.95) << results.dump();

  // The loss really fell: first vs last step of the metrics.
  const auto rows = read_jsonl(dir / "runs/t/pretrain/metrics.jsonl");
  ASSERT_EQ(rows.size(), 900u);
  EXPECT_GT(rows.front()["loss"].get<double>(), 1.0);
  EXPECT_LT(rows.back()["loss"].get<double>(), 0.05);
}
