// `[run] device = "cuda"` end to end. On a GPU machine (tests/gpu/run.sh): the tiny distillation
// job on the GPU reproduces the CPU run (pretraining losses within fp32 tolerance, the first
// distillation step's loss too), and in bf16 mixed precision within bf16 tolerance. Everywhere:
// no device is one clear error with exit status 2 before anything is written. (The parallel
// layouts on the device are the job tests of tools/test's device-emulation stage, which run
// every `opd run` with run.device=cuda: OPD_TEST_DEVICE.)
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "backend/ops.hpp"
#include "core/device_access.hpp"
#include "testing/gpu.hpp"
#include "testing/process.hpp"
#include "testing/tiny_job.hpp"

using namespace opd::testing;
namespace fs = std::filesystem;

namespace {

// The first row's value of `key` in a stage's metrics.
double first(const fs::path& run, const char* stage, const char* key) {
  const auto rows = read_jsonl(run / stage / "metrics.jsonl");
  EXPECT_FALSE(rows.empty()) << stage;
  return rows.empty() ? NAN : rows.front().at(key).get<double>();
}

void expect_close(double gpu, double cpu, double rel, const char* what) {
  EXPECT_NEAR(gpu, cpu, rel * std::max(1.0, std::abs(cpu))) << what;
}

}  // namespace

TEST(CudaRun, F32DistillationReproducesTheCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device (or built without CUDA)";
  ScratchDir dir("cuda_f32");
  make_arith_data(dir.path(), 200);
  write_file(dir / "cpu.toml", tiny_distill_job("runs/cpu", 4));
  write_file(dir / "gpu.toml", tiny_distill_job("runs/gpu", 4));
  auto cpu = run_opd("run cpu.toml --set run.device=cpu", dir.path());
  ASSERT_EQ(cpu.status, 0) << cpu.err;
  auto gpu = run_opd("run gpu.toml --set run.device=cuda", dir.path());
  ASSERT_EQ(gpu.status, 0) << gpu.err;
  // Pretraining samples nothing: the whole stages agree within fp32 tolerance.
  for (const char* stage : {"teacher/metrics.jsonl", "student/metrics.jsonl"}) {
    SCOPED_TRACE(stage);
    expect_same_run(read_jsonl(dir / "runs/cpu" / stage), read_jsonl(dir / "runs/gpu" / stage), 1e-4);
  }
  // The first distillation step: the same rollouts (sampled from the same model), the same loss.
  expect_close(first(dir / "runs/gpu", "distill", "loss"), first(dir / "runs/cpu", "distill", "loss"),
               1e-3, "distill loss");
  expect_close(first(dir / "runs/gpu", "distill", "kl_k1"), first(dir / "runs/cpu", "distill", "kl_k1"),
               1e-3, "distill kl_k1");
}

TEST(CudaRun, Bf16DistillationWithinBf16ToleranceOfTheCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device (or built without CUDA)";
  ScratchDir dir("cuda_bf16");
  make_arith_data(dir.path(), 200);
  write_file(dir / "cpu.toml", tiny_distill_job("runs/cpu", 2));
  write_file(dir / "gpu.toml", tiny_distill_job("runs/gpu", 2));
  auto cpu = run_opd("run cpu.toml --set run.device=cpu --set run.precision=bf16", dir.path());
  ASSERT_EQ(cpu.status, 0) << cpu.err;
  auto gpu = run_opd("run gpu.toml --set run.device=cuda --set run.precision=bf16", dir.path());
  ASSERT_EQ(gpu.status, 0) << gpu.err;
  expect_close(first(dir / "runs/gpu", "teacher", "loss"), first(dir / "runs/cpu", "teacher", "loss"),
               1e-2, "pretraining loss");
  expect_close(first(dir / "runs/gpu", "distill", "loss"), first(dir / "runs/cpu", "distill", "loss"),
               1e-2, "distill loss");
}

TEST(CudaRun, OnTheEmulatedDeviceTheWholeJobIsTheCpuRunBitForBit) {
  // Device emulation runs the CPU kernels on the "device" tensors, so any difference from the
  // CPU run comes from the device path's own orchestration (a missed copy, a wrong slice, a
  // buffer read before it is written, which emulated device memory fills with NaN).
  if (!opd::core::kDeviceEmulation) GTEST_SKIP() << "a device-emulation build's test";
  ScratchDir dir("cuda_emulated");
  make_arith_data(dir.path(), 200);
  write_file(dir / "cpu.toml", tiny_distill_job("runs/cpu", 4));
  write_file(dir / "gpu.toml", tiny_distill_job("runs/gpu", 4));
  for (const char* precision : {"fp32", "bf16"}) {
    SCOPED_TRACE(precision);
    const std::string p = std::string(" --set run.precision=") + precision;
    fs::remove_all(dir / "runs");
    ASSERT_EQ(run_opd("run cpu.toml --set run.device=cpu" + p, dir.path()).status, 0);
    auto gpu = run_opd("run gpu.toml --set run.device=cuda" + p, dir.path());
    ASSERT_EQ(gpu.status, 0) << gpu.err;
    for (const char* stage : {"teacher", "student", "distill"}) {
      SCOPED_TRACE(stage);
      const std::string m = std::string(stage) + "/metrics.jsonl";
      expect_same_run(read_jsonl(dir / "runs/cpu" / m), read_jsonl(dir / "runs/gpu" / m), 0.0);
    }
  }
}

TEST(CudaRun, BenchmarksRunOnTheDeviceAtATinySize) {
  // The three benchmarks tests/gpu/run.sh runs at 0.5B, at a size that takes a second: a host
  // access to device memory in their set-up or timing loops fails here (on the emulated device)
  // rather than in the one GPU run.
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device (or built without CUDA)";
  ScratchDir dir("cuda_bench");
  const std::string model =
      " --device cuda --d-model 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 --vocab 1000 "
      "--precision bf16";
  for (const std::string& args :
       {"train" + model + " --batch 2 --seq 32 --steps 2", "score" + model + " --batch 2 --seq 32 --steps 2",
        "decode" + model + " --batch-sizes 1 4 --prompt 8 --new-tokens 8"}) {
    SCOPED_TRACE(args);
    auto r = run_opd("bench " + args + " --json out.json", dir.path());
    ASSERT_EQ(r.status, 0) << r.err;
    const auto json = nlohmann::json::parse(read_file(dir / "out.json"));
    ASSERT_EQ(json.at("runs").size(), 1u);
    const auto& run = json.at("runs")[0];
    EXPECT_EQ(run.at("device"), "cuda");
    EXPECT_EQ(run.at("precision"), "bf16");
    if (run.contains("batches"))
      for (const auto& b : run.at("batches")) EXPECT_GT(b.at("tokens_per_second").get<double>(), 0.0);
    else
      EXPECT_GT(run.at("tokens_per_second").get<double>(), 0.0);
  }
}

TEST(CudaRun, WithoutAGpuIsOneClearError) {
  if (have_gpu()) GTEST_SKIP() << "this machine has a GPU";
  ScratchDir dir("cuda_none");
  make_arith_data(dir.path(), 100);
  write_file(dir / "job.toml", tiny_distill_job("runs/x", 2));
  auto r = run_opd("run job.toml --set run.device=cuda", dir.path());
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("run.device"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no CUDA device"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "runs/x")) << "nothing may be written";
}

TEST(CudaRun, AnUnknownPrecisionIsRefusedBeforeAnyWork) {
  ScratchDir dir("cuda_precision");
  make_arith_data(dir.path(), 100);
  write_file(dir / "job.toml", tiny_distill_job("runs/x", 2));
  auto bad = run_opd("run job.toml --set run.device=cuda --set run.precision=fp16", dir.path());
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("precision"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(dir / "runs/x"));
}
