// Tests of inspect_checkpoint: the summary names every entry with its shape and statistics,
// totals parameters per top-level group, and reports a damaged tensor instead of failing.
#include <gtest/gtest.h>

#include <cstring>
#include <iostream>
#include <sstream>

#include "io/checkpoint.hpp"
#include "io/inspect.hpp"
#include "io/io_test_util.hpp"

namespace opd::io {
namespace {

using core::DType;
using core::Tensor;
using testing::read_file;
using testing::TempDir;
using testing::throws_input;
using testing::write_file;

// The line of `text` that contains `key`, or "" (statistics are checked on their own row).
std::string line_with(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.find(key) != std::string::npos) return line;
  return {};
}

// The whitespace-separated fields of a line.
std::vector<std::string> fields(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  std::string f;
  while (in >> f) out.push_back(f);
  return out;
}

void write_example(const std::string& path) {
  CheckpointWriter w(path);
  // mean 2.5, rms sqrt(7.5) = 2.73861, min 1, max 4.
  w.write_tensor("model/model.layers.0.self_attn.q_proj.weight",
                 Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2}));
  // bf16 1.0, -2.0, 0.5: mean -0.166667, rms sqrt(5.25/3) = 1.32288.
  Tensor bf = Tensor::empty({3}, DType::BF16);
  const uint16_t bits[] = {0x3f80, 0xc000, 0x3f00};
  std::memcpy(bf.raw(), bits, sizeof bits);
  w.write_tensor("model/model.norm.weight", bf);
  w.write_tensor("model/model.layers.10.mlp.down_proj.weight",
                 Tensor::from_vector(std::vector<float>{-1, -1, -1, -1, -1, -1}, {3, 2}));
  w.write_tensor("optimizer/exp_avg/model.norm.weight",
                 Tensor::from_vector(std::vector<float>{0, 0, 0}, {3}));
  w.write_tensor("data/ids", Tensor::from_vector(std::vector<int32_t>{7, 3, 151643}, {3}));
  w.write_int("state/step", 120);
  w.write_double("state/lr", 0.0003);
  w.write_u64s("state/rng/sampler", {11, 22, 33});
  w.write_string("config/job_toml", "[run]\nname = \"tiny\"\nsteps = 200\n");
  w.set_attribute("layout", "tp=1 pp=1 dp=1");
  w.set_attribute("world_size", int64_t{1});
  w.commit();
}

TEST(Inspect, SummarisesEveryEntryWithShapesAndStatistics) {
  TempDir dir;
  std::string path = dir / "step_00000120.h5";
  write_example(path);
  std::string out = inspect_checkpoint(path);
  std::cout << out;

  EXPECT_NE(out.find("opd-checkpoint, version 1"), std::string::npos);
  EXPECT_NE(out.find("layout = tp=1 pp=1 dp=1"), std::string::npos);
  EXPECT_NE(out.find("world_size = 1"), std::string::npos);
  EXPECT_NE(out.find("state/step = 120"), std::string::npos);
  EXPECT_NE(out.find("state/lr = 0.0003"), std::string::npos);
  EXPECT_NE(out.find("state/rng/sampler = [11, 22, 33]  (u64 x3)"), std::string::npos);
  EXPECT_NE(out.find("config/job_toml: \"[run]\" (3 lines, 32 bytes)"), std::string::npos);

  auto q = fields(line_with(out, "q_proj"));
  EXPECT_EQ(q, (std::vector<std::string>{"model/model.layers.0.self_attn.q_proj.weight", "f32",
                                         "[2,", "2]", "4", "2.5", "2.73861", "1", "4"}));
  auto n = fields(line_with(out, "model/model.norm.weight"));
  EXPECT_EQ(n, (std::vector<std::string>{"model/model.norm.weight", "bf16", "[3]", "3",
                                         "-0.166667", "1.32288", "-2", "1"}));
  auto ids = fields(line_with(out, "data/ids"));
  EXPECT_EQ(ids, (std::vector<std::string>{"data/ids", "i32", "[3]", "3", "-", "-", "3",
                                           "151643"}));  // no mean/rms for integers
  // Natural order: layers.0 before layers.10.
  EXPECT_LT(out.find("layers.0.self_attn"), out.find("layers.10.mlp"));

  auto model = fields(line_with(out, "  model  "));
  ASSERT_GE(model.size(), 5u);
  EXPECT_EQ(model[1], "3");  // tensors
  EXPECT_EQ(model[3], "13");  // 4 + 3 + 6 parameters
  auto opt = fields(line_with(out, "  optimizer  "));
  ASSERT_GE(opt.size(), 4u);
  EXPECT_EQ(opt[1], "1");
  EXPECT_EQ(opt[3], "3");
  auto all = fields(line_with(out, "  all  "));
  ASSERT_GE(all.size(), 4u);
  EXPECT_EQ(all[1], "5");
  EXPECT_EQ(all[3], "19");
  // Scalars and strings are not tensors: not in the table.
  EXPECT_EQ(line_with(out, "state/step").find("i64"), std::string::npos);
}

TEST(Inspect, ReportsADamagedTensorInsteadOfFailing) {
  TempDir dir;
  std::string path = dir / "step_00000001.h5";
  std::vector<int32_t> pattern(64);
  for (std::size_t i = 0; i < pattern.size(); ++i) pattern[i] = 0x7a110000 + 31 * static_cast<int>(i);
  {
    CheckpointWriter w(path);
    w.write_tensor("model/victim", Tensor::from_vector(pattern, {8, 8}));
    w.write_tensor("model/fine", Tensor::from_vector(std::vector<float>{2, 2}, {2}));
    w.commit();
  }
  std::string bytes = read_file(path);
  std::size_t at = bytes.find(std::string(reinterpret_cast<const char*>(pattern.data()), 256));
  ASSERT_NE(at, std::string::npos);
  bytes[at + 100] ^= 0x01;
  write_file(path, bytes);
  std::string out = inspect_checkpoint(path);
  EXPECT_NE(line_with(out, "model/victim").find("CHECKSUM MISMATCH"), std::string::npos) << out;
  auto fine = fields(line_with(out, "model/fine"));
  ASSERT_GE(fine.size(), 8u);
  EXPECT_EQ(fine[4], "2");  // mean
  EXPECT_EQ(fine[5], "2");  // rms
}

TEST(Inspect, MissingOrUnreadableFileIsAnInputError) {
  TempDir dir;
  EXPECT_TRUE(throws_input([&] { inspect_checkpoint(dir / "nope.h5"); }, {"does not exist"}));
  write_file(dir / "bad.h5", "nope");
  EXPECT_TRUE(throws_input([&] { inspect_checkpoint(dir / "bad.h5"); },
                           {"not a readable opd checkpoint"}));
}

}  // namespace
}  // namespace opd::io
