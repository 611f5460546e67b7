// `[run] precision = "bf16"` on the CPU (bf16 GEMM operands widened exactly, f32 masters): the
// tiny distillation job runs to the end, its losses stay within bf16 tolerance of the f32 run's,
// and its checkpoints hold the f32 master weights (so a checkpoint is the same in either precision).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "io/checkpoint.hpp"
#include "testing/process.hpp"
#include "testing/tiny_job.hpp"

using namespace opd::testing;
namespace fs = std::filesystem;

TEST(Precision, Bf16JobTracksTheF32JobAndStoresF32Masters) {
  ScratchDir dir("bf16");
  make_arith_data(dir.path(), 200);
  write_file(dir / "f32.toml", tiny_distill_job("runs/f32", 4, 2));
  write_file(dir / "bf16.toml", tiny_distill_job("runs/bf16", 4, 2));
  auto a = run_opd("run f32.toml", dir.path());
  ASSERT_EQ(a.status, 0) << a.err;
  auto b = run_opd("run bf16.toml --set run.precision=bf16", dir.path());
  ASSERT_EQ(b.status, 0) << b.err;
  const auto fa = read_jsonl(dir / "runs/f32/teacher/metrics.jsonl");
  const auto fb = read_jsonl(dir / "runs/bf16/teacher/metrics.jsonl");
  ASSERT_EQ(fa.size(), fb.size());
  for (std::size_t i = 0; i < fa.size(); ++i) {
    const double x = fa[i].at("loss").get<double>(), y = fb[i].at("loss").get<double>();
    EXPECT_NEAR(y, x, 2e-2 * x) << "step " << i;
    if (i == 0) EXPECT_NE(x, y) << "the bf16 run must really round its GEMM operands";
  }
  const auto da = read_jsonl(dir / "runs/bf16/distill/metrics.jsonl");
  ASSERT_FALSE(da.empty());
  for (const auto& row : da) EXPECT_TRUE(std::isfinite(row.at("loss").get<double>()));
  opd::io::CheckpointReader r((dir / "runs/bf16/distill/checkpoints/step_00000004.h5").string());
  for (const auto& d : r.list())
    if (d.is_tensor && d.name.rfind("model/", 0) == 0)
      EXPECT_EQ(r.read_tensor(d.name).dtype(), opd::core::DType::F32) << d.name;
}
