// The teacher manifest (DESIGN.md §7): a distill stage's checkpoints record its teacher's path and
// content hash; resuming against a teacher with other weights is refused with a clear message
// (exit 2, nothing written) unless the job says allow_teacher_change = true.
#include <gtest/gtest.h>

#include <filesystem>

#include "distill/model_io.hpp"
#include "io/checkpoint.hpp"
#include "testing/process.hpp"
#include "testing/tiny_job.hpp"

using namespace opd::testing;
namespace fs = std::filesystem;

TEST(TeacherManifest, ResumingAgainstAnotherTeacherIsRefusedUnlessAllowed) {
  ScratchDir dir("manifest");
  make_arith_data(dir.path(), 200);
  write_file(dir / "job.toml", tiny_distill_job("runs/a", 4, 2));
  auto first = run_opd("run job.toml", dir.path());
  ASSERT_EQ(first.status, 0) << first.err;
  const fs::path last = dir / "runs/a/distill/checkpoints/step_00000004.h5";
  {
    opd::io::CheckpointReader r(last.string());
    opd::io::CheckpointReader teacher((dir / "runs/a/teacher/checkpoints/step_00000006.h5").string());
    EXPECT_EQ(r.read_string("teacher/hash"), opd::distill::model_content_hash(teacher));
    EXPECT_EQ(r.read_string("teacher/hash").size(), 64u);
    EXPECT_NE(r.read_string("teacher/path").find("teacher"), std::string::npos);
    EXPECT_EQ(r.read_string("teacher/tokenizer"), teacher.read_string("config/tokenizer"));
  }

  // Continue the stage two more steps, with the same teacher: accepted.
  fs::remove(dir / "runs/a/distill/DONE");
  write_file(dir / "same.toml",
             edit(tiny_distill_job("runs/a", 4, 2), "steps = 4", "steps = 6"));
  auto same = run_opd("run same.toml", dir.path());
  ASSERT_EQ(same.status, 0) << same.err;
  EXPECT_NE(same.out.find("resuming from"), std::string::npos) << same.out;

  // Now against the student's pretrained model as the teacher: refused, nothing written.
  fs::remove(dir / "runs/a/distill/DONE");
  const std::string other =
      edit(edit(tiny_distill_job("runs/a", 4, 2), "steps = 4", "steps = 8"), "teacher = \"@teacher\"",
           "teacher = \"@student\"");
  write_file(dir / "other.toml", other);
  const auto before = fs::last_write_time(dir / "runs/a/distill/metrics.jsonl");
  auto refused = run_opd("run other.toml", dir.path());
  EXPECT_EQ(refused.status, 2) << refused.err << refused.out;
  EXPECT_EQ(error_lines(refused.err), 1) << refused.err;
  EXPECT_NE(refused.err.find("other weights"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("allow_teacher_change=true"), std::string::npos) << refused.err;
  EXPECT_FALSE(fs::exists(dir / "runs/a/distill/checkpoints/step_00000008.h5"));
  EXPECT_EQ(fs::last_write_time(dir / "runs/a/distill/metrics.jsonl"), before);

  // Told to: it resumes with the new teacher and records it.
  auto allowed = run_opd("run other.toml --set stage.distill.allow_teacher_change=true", dir.path());
  ASSERT_EQ(allowed.status, 0) << allowed.err;
  EXPECT_NE(allowed.out.find("different teacher"), std::string::npos) << allowed.out;
  opd::io::CheckpointReader r((dir / "runs/a/distill/checkpoints/step_00000008.h5").string());
  opd::io::CheckpointReader student((dir / "runs/a/student/checkpoints/step_00000003.h5").string());
  EXPECT_EQ(r.read_string("teacher/hash"), opd::distill::model_content_hash(student));
}
