// Tests of CheckpointDir: step file names, publishing `latest`, choosing the checkpoint to
// resume from when `latest` is missing, stale or damaged, ignoring .tmp files, and pruning.
#include <gtest/gtest.h>

#include <filesystem>

#include "io/checkpoint.hpp"
#include "io/checkpoint_dir.hpp"
#include "io/io_test_util.hpp"

namespace opd::io {
namespace {

namespace fs = std::filesystem;
using testing::read_file;
using testing::TempDir;
using testing::write_file;

// Writes and commits a small valid checkpoint for `step` (without publishing it).
void save(const CheckpointDir& d, int64_t step) {
  CheckpointWriter w(d.path_for_step(step));
  w.write_int("state/step", step);
  w.commit();
}

int64_t step_in(const std::string& path) { return CheckpointReader(path).read_int("state/step"); }

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(dir)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

TEST(CheckpointDir, StepFileNames) {
  CheckpointDir d("/run/sft/checkpoints");
  EXPECT_EQ(d.path_for_step(120), "/run/sft/checkpoints/step_00000120.h5");
  EXPECT_EQ(d.path_for_step(0), "/run/sft/checkpoints/step_00000000.h5");
  EXPECT_EQ(d.path_for_step(123456789), "/run/sft/checkpoints/step_123456789.h5");
  EXPECT_EQ(CheckpointDir::step_of("step_00000120.h5"), 120);
  EXPECT_EQ(CheckpointDir::step_of("step_123456789.h5"), 123456789);
  EXPECT_FALSE(CheckpointDir::step_of("step_00000120.h5.tmp"));
  EXPECT_FALSE(CheckpointDir::step_of("step_.h5"));
  EXPECT_FALSE(CheckpointDir::step_of("step_12a.h5"));
  EXPECT_FALSE(CheckpointDir::step_of("latest"));
}

TEST(CheckpointDir, EmptyOrMissingDirectoryHasNoLatest) {
  TempDir tmp;
  std::string note;
  EXPECT_FALSE(CheckpointDir(tmp / "missing").latest_path(&note));
  EXPECT_NE(note.find("no `latest`"), std::string::npos) << note;
  EXPECT_FALSE(CheckpointDir(tmp.path()).latest_path());
  EXPECT_TRUE(CheckpointDir(tmp / "missing").prune(1, 0).empty());
}

TEST(CheckpointDir, PublishPointsLatestAtTheStep) {
  TempDir tmp;
  CheckpointDir d(tmp / "sft/checkpoints");
  save(d, 10);
  d.publish(10);
  EXPECT_EQ(read_file(tmp / "sft/checkpoints/latest"), "step_00000010.h5\n");
  save(d, 20);
  EXPECT_EQ(d.latest_path(), d.path_for_step(10));  // committed but not yet published
  d.publish(20);
  std::string note = "untouched";
  EXPECT_EQ(d.latest_path(&note), d.path_for_step(20));
  EXPECT_EQ(note, "untouched");  // no fallback, no note
  EXPECT_EQ(names_in(d.dir()),
            (std::vector<std::string>{"latest", "step_00000010.h5", "step_00000020.h5"}));
  EXPECT_EQ(d.published_steps(), (std::vector<int64_t>{10, 20}));
}

TEST(CheckpointDir, LatestNamingADeletedFileFallsBackToTheNewestValid) {
  TempDir tmp;
  CheckpointDir d(tmp.path());
  save(d, 10);
  save(d, 20);
  save(d, 30);
  d.publish(30);
  fs::remove(d.path_for_step(30));
  std::string note;
  auto p = d.latest_path(&note);
  ASSERT_TRUE(p);
  EXPECT_EQ(*p, d.path_for_step(20));
  EXPECT_EQ(step_in(*p), 20);
  EXPECT_NE(note.find("does not exist"), std::string::npos) << note;
}

TEST(CheckpointDir, MissingOrGarbageLatestFallsBack) {
  TempDir tmp;
  CheckpointDir d(tmp.path());
  save(d, 5);
  save(d, 15);
  EXPECT_EQ(d.latest_path(), d.path_for_step(15));  // no `latest` at all
  write_file(tmp / "latest", "");
  EXPECT_EQ(d.latest_path(), d.path_for_step(15));
  write_file(tmp / "latest", "not_a_checkpoint.h5\n");
  EXPECT_EQ(d.latest_path(), d.path_for_step(15));
  write_file(tmp / "latest", "  step_00000005.h5  \n");  // hand-edited: whitespace is fine
  EXPECT_EQ(d.latest_path(), d.path_for_step(5));
}

TEST(CheckpointDir, TmpFilesAreNeverChosen) {
  TempDir tmp;
  CheckpointDir d(tmp.path());
  save(d, 10);
  d.publish(10);
  // A crashed save of step 20: a complete, valid HDF5 file, but never renamed. Newer than 10.
  {
    CheckpointWriter w(d.path_for_step(20));
    w.write_int("state/step", 20);
    w.commit();
  }
  fs::rename(d.path_for_step(20), d.path_for_step(20) + ".tmp");
  EXPECT_EQ(d.latest_path(), d.path_for_step(10));
  fs::remove(tmp / "latest");
  EXPECT_EQ(d.latest_path(), d.path_for_step(10));
  write_file(tmp / "latest", "step_00000020.h5.tmp\n");  // even when `latest` names it
  std::string note;
  EXPECT_EQ(d.latest_path(&note), d.path_for_step(10));
  EXPECT_NE(note.find(".tmp"), std::string::npos) << note;
  // Only a .tmp: nothing to resume from.
  fs::remove(d.path_for_step(10));
  EXPECT_FALSE(d.latest_path());
}

TEST(CheckpointDir, DamagedNewestCheckpointFallsBackToTheOneBefore) {
  TempDir tmp;
  CheckpointDir d(tmp.path());
  save(d, 10);
  save(d, 20);
  d.publish(20);
  std::string bytes = read_file(d.path_for_step(20));
  write_file(d.path_for_step(20), bytes.substr(0, bytes.size() / 2));
  std::string note;
  EXPECT_EQ(d.latest_path(&note), d.path_for_step(10));
  EXPECT_NE(note.find("truncated"), std::string::npos) << note;
  write_file(d.path_for_step(10), "garbage");
  EXPECT_FALSE(d.latest_path(&note));
  EXPECT_NE(note.find("skipped"), std::string::npos) << note;
}

TEST(CheckpointDir, PruneKeepsTheLastKAndEveryMth) {
  TempDir tmp;
  CheckpointDir d(tmp.path());
  for (int64_t s = 10; s <= 100; s += 10) save(d, s);
  d.publish(100);
  write_file(d.path_for_step(110) + ".tmp", "crashed save");
  write_file(tmp / "latest.tmp", "step_00000100.h5\n");
  write_file(tmp / "notes.txt", "not ours");
  write_file(tmp / "step_7.h5", "not canonical: not ours");

  auto removed = d.prune(/*keep_last=*/2, /*keep_every=*/30);
  EXPECT_EQ(d.published_steps(), (std::vector<int64_t>{30, 60, 90, 100}));
  EXPECT_EQ(removed.size(), 6u + 2u);  // 10 20 40 50 70 80, and the two .tmp files
  EXPECT_FALSE(fs::exists(d.path_for_step(110) + ".tmp"));
  EXPECT_FALSE(fs::exists(tmp / "latest.tmp"));
  EXPECT_TRUE(fs::exists(tmp / "notes.txt"));
  EXPECT_TRUE(fs::exists(tmp / "step_7.h5"));
  EXPECT_EQ(d.latest_path(), d.path_for_step(100));

  // The checkpoint `latest` names survives even when it is neither recent nor a milestone.
  d.publish(60);
  d.prune(1, 0);
  EXPECT_EQ(d.published_steps(), (std::vector<int64_t>{60, 100}));
  EXPECT_EQ(d.latest_path(), d.path_for_step(60));

  // keep_last = 0, keep_every = 0: only the published one is left.
  d.prune(0, 0);
  EXPECT_EQ(d.published_steps(), (std::vector<int64_t>{60}));
  EXPECT_EQ(step_in(*d.latest_path()), 60);
}

TEST(CheckpointDir, PruneWithEveryStepAMilestoneKeepsAll) {
  TempDir tmp;
  CheckpointDir d(tmp.path());
  for (int64_t s : {2, 4, 6}) save(d, s);
  d.publish(6);
  EXPECT_TRUE(d.prune(0, 2).empty());
  EXPECT_EQ(d.published_steps(), (std::vector<int64_t>{2, 4, 6}));
  d.prune(5, 0);  // more to keep than there are
  EXPECT_EQ(d.published_steps(), (std::vector<int64_t>{2, 4, 6}));
}

}  // namespace
}  // namespace opd::io
