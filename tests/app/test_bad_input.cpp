// Bad input to `opd run` (DESIGN.md §9): malformed TOML, unknown keys, wrong types, missing
// files, corrupt or truncated checkpoints, prompts longer than the context. Each must give one
// clear line on stderr, exit status 2, no crash, and leave the run directory as it was.
#include <gtest/gtest.h>

#include <filesystem>

#include "testing/process.hpp"
#include "testing/tiny_job.hpp"

using namespace opd::testing;
namespace fs = std::filesystem;

namespace {

class BadInput : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new ScratchDir("bad-input-data");
    make_arith_data(data_->path(), 64);
    // One real checkpoint to corrupt.
    write_file(*data_ / "ok.toml", tiny_job("run_ok", 2));
    auto r = run_opd("run ok.toml", data_->path());
    ASSERT_EQ(r.status, 0) << r.err;
  }
  static void TearDownTestSuite() { delete data_; }

  void SetUp() override {
    for (const char* f : {"train.jsonl", "test.jsonl"})
      fs::copy_file(*data_ / f, dir_ / f);
    // A run directory with content, which a bad invocation must leave exactly as it was.
    write_file(dir_ / "runs/x/keep.txt", "precious\n");
  }

  // Runs the job text and checks the failure contract; returns stderr.
  std::string expect_input_error(const std::string& job, const std::string& extra = "") {
    write_file(dir_ / "job.toml", job);
    const std::string before = tree_snapshot(dir_ / "runs");
    auto r = run_opd("run job.toml" + extra, dir_.path());
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_EQ(r.err.rfind("opd: error: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(tree_snapshot(dir_ / "runs"), before);
    return r.err;
  }

  std::string good() { return tiny_job("runs/x", 2); }
  static std::string replace(std::string s, const std::string& a, const std::string& b) {
    auto at = s.find(a);
    EXPECT_NE(at, std::string::npos) << a;
    return s.replace(at, a.size(), b);
  }

  static ScratchDir* data_;
  ScratchDir dir_{"bad-input"};
};
ScratchDir* BadInput::data_ = nullptr;

}  // namespace

TEST_F(BadInput, MalformedToml) {
  std::string err = expect_input_error(replace(good(), "seed = 7", "seed = = 7"));
  EXPECT_NE(err.find("job.toml:3:"), std::string::npos) << err;
}

TEST_F(BadInput, UnknownKeyNamesPathLineAndSuggestion) {
  std::string err = expect_input_error(replace(good(), "lr = 3e-3", "lrr = 3e-3"));
  EXPECT_NE(err.find("unknown key 'stage[0].optim.lrr'"), std::string::npos) << err;
  EXPECT_NE(err.find("did you mean 'lr'"), std::string::npos) << err;
  EXPECT_NE(err.find("job.toml:"), std::string::npos) << err;
}

TEST_F(BadInput, WrongTypeNamesKey) {
  std::string err = expect_input_error(replace(good(), "steps = 2", "steps = \"two\""));
  EXPECT_NE(err.find("'stage[0].steps' must be an integer"), std::string::npos) << err;
}

TEST_F(BadInput, BadChoiceListsAllowedValues) {
  std::string err = expect_input_error(replace(good(), "\"cosine\"", "\"cosin\""));
  EXPECT_NE(err.find("\"cosine\""), std::string::npos) << err;
}

TEST_F(BadInput, WrongOverrideType) {
  std::string err = expect_input_error(good(), " --set stage.pretrain.batch_size=-3");
  EXPECT_NE(err.find("batch_size"), std::string::npos) << err;
}

TEST_F(BadInput, MissingJobAndDataFiles) {
  auto r = run_opd("run nowhere.toml", dir_.path());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("nowhere.toml"), std::string::npos);
  std::string err = expect_input_error(replace(good(), "\"train.jsonl\"", "\"missing.jsonl\""));
  EXPECT_NE(err.find("missing.jsonl"), std::string::npos) << err;
}

TEST_F(BadInput, MalformedJsonlNamesLine) {
  write_file(dir_ / "train.jsonl", "{\"prompt\": \"1+1=\", \"response\": \"2\"}\n{\"prompt\": 3\n");
  std::string err = expect_input_error(good());
  EXPECT_NE(err.find("train.jsonl:2"), std::string::npos) << err;
}

TEST_F(BadInput, CorruptAndTruncatedCheckpoints) {
  const fs::path ck = *data_ / "run_ok/pretrain/checkpoints/step_00000002.h5";
  ASSERT_TRUE(fs::exists(ck));
  // Truncated to half.
  const std::string bytes = read_file(ck);
  write_file(dir_ / "half.h5", bytes.substr(0, bytes.size() / 2));
  std::string err = expect_input_error(replace(good(), "model = \"tiny\"", "model = \"half.h5\""));
  EXPECT_NE(err.find("half.h5"), std::string::npos) << err;
  // Not HDF5 at all.
  write_file(dir_ / "junk.h5", "this is not a checkpoint\n");
  err = expect_input_error(replace(good(), "model = \"tiny\"", "model = \"junk.h5\""));
  EXPECT_NE(err.find("junk.h5"), std::string::npos) << err;
}

TEST_F(BadInput, PromptLongerThanContext) {
  std::string job = replace(good(), "max_seq_len = 48", "max_seq_len = 48");
  write_file(dir_ / "test.jsonl",
             "{\"prompt\": \"" + std::string(60, '1') + "+1=\", \"answer\": \"2\"}\n");
  std::string err = expect_input_error(job);
  EXPECT_NE(err.find("context"), std::string::npos) << err;
  EXPECT_NE(err.find("test.jsonl:1"), std::string::npos) << err;
}

TEST_F(BadInput, SequenceLongerThanSeqLen) {
  write_file(dir_ / "train.jsonl",
             "{\"prompt\": \"" + std::string(60, '1') + "+1=\", \"response\": \"2\"}\n");
  std::string err = expect_input_error(good());
  EXPECT_NE(err.find("seq_len"), std::string::npos) << err;
}

TEST_F(BadInput, ImpossibleModelShape) {
  std::string err = expect_input_error(replace(good(), "n_heads = 2", "n_heads = 3"));
  EXPECT_NE(err.find("n_heads"), std::string::npos) << err;
}

TEST_F(BadInput, StopTextMustBeOneToken) {
  std::string err = expect_input_error(replace(good(), "limit = 8", "limit = 8\nstop = [\"ab\"]"));
  EXPECT_NE(err.find("stop text \"ab\""), std::string::npos) << err;
}
