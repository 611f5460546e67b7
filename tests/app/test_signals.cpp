// Real signals and kills (DESIGN.md §7): SIGUSR1 or SIGTERM makes a run checkpoint at the next
// step boundary and exit with 3, and the resumed run equals an uninterrupted one; SIGKILL in the
// middle of a checkpoint write leaves the previous checkpoint as `latest`, loadable.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "io/checkpoint.hpp"
#include "testing/process.hpp"
#include "testing/tiny_job.hpp"

using namespace opd::testing;
namespace fs = std::filesystem;

namespace {

// Starts `argv` in `cwd` with stdout/stderr to files; returns the child's pid.
pid_t spawn(const std::vector<std::string>& argv, const fs::path& cwd) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (chdir(cwd.c_str()) != 0) _exit(127);
    FILE* out = freopen("spawn.out", "w", stdout);
    FILE* err = freopen("spawn.err", "w", stderr);
    (void)out;
    (void)err;
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  return pid;
}

int wait_status(pid_t pid) {
  int raw = 0;
  waitpid(pid, &raw, 0);
  return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
}

// Waits until `pred` holds (polling), at most `seconds`.
template <class Pred>
bool wait_for(Pred pred, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

int64_t lines(const fs::path& p) {
  const std::string s = read_file(p);
  return std::count(s.begin(), s.end(), '\n');
}

std::vector<std::string> losses(const fs::path& metrics) {
  std::vector<std::string> out;
  for (const auto& j : read_jsonl(metrics)) out.push_back(j["loss"].dump());
  return out;
}

void signal_then_resume(const std::vector<std::string>& launcher, int sig) {
  ScratchDir dir("signals");
  make_arith_data(dir.path(), 300);
  write_file(dir / "full.toml", tiny_job("runs/full", 2000, 0));
  write_file(dir / "cut.toml", tiny_job("runs/cut", 2000, 0));
  std::vector<std::string> full = launcher, cut = launcher;
  for (auto* v : {&full, &cut}) v->insert(v->end(), {std::string(OPD_BINARY), "run"});
  full.push_back("full.toml");
  cut.push_back("cut.toml");
  ASSERT_EQ(wait_status(spawn(full, dir.path())), 0) << read_file(dir / "spawn.err");
  const pid_t pid = spawn(cut, dir.path());
  const fs::path metrics = dir / "runs/cut/pretrain/metrics.jsonl";
  ASSERT_TRUE(wait_for([&] { return fs::exists(metrics) && lines(metrics) >= 20; }, 60));
  kill(pid, sig);
  EXPECT_EQ(wait_status(pid), 3) << read_file(dir / "spawn.err");
  const int64_t done = lines(metrics);
  EXPECT_LT(done, 2000);  // it really stopped early
  ASSERT_EQ(wait_status(spawn(cut, dir.path())), 0) << read_file(dir / "spawn.err");
  EXPECT_EQ(losses(metrics), losses(dir / "runs/full/pretrain/metrics.jsonl"));
}

}  // namespace

TEST(Signals, Sigusr1CheckpointsExitsThreeAndResumesExactly) { signal_then_resume({}, SIGUSR1); }

TEST(Signals, SigtermDoesTheSame) { signal_then_resume({}, SIGTERM); }

TEST(Signals, Sigusr1ToMpirunReachesEveryRank) {
  signal_then_resume({"mpirun", "--oversubscribe", "-np", "2"}, SIGUSR1);
}

TEST(Signals, KillDuringACheckpointWriteKeepsThePreviousOne) {
  ScratchDir dir("kill");
  make_arith_data(dir.path(), 300);
  // A model whose checkpoints take a while to write, one every step.
  std::string job = tiny_job("runs/k", 400, 1);
  job.replace(job.find("d_model = 32"), 12, "d_model = 512");
  job.replace(job.find("n_layers = 1"), 12, "n_layers = 3");
  job.replace(job.find("batch_size = 8"), 14, "batch_size = 2");
  job.replace(job.find("keep_last = 3"), 13, "keep_last = 2");
  write_file(dir / "job.toml", job);
  const pid_t pid = spawn({std::string(OPD_BINARY), "run", "job.toml"}, dir.path());
  const fs::path ck = dir / "runs/k/pretrain/checkpoints";
  // Wait for one published checkpoint, then for a write in progress, and kill it there.
  ASSERT_TRUE(wait_for([&] { return fs::exists(ck / "latest"); }, 120));
  bool caught = wait_for([&] {
    for (const auto& e : fs::directory_iterator(ck))
      if (e.path().extension() == ".tmp" && e.path().string().find(".h5.tmp") != std::string::npos) return true;
    return false;
  }, 120);
  kill(pid, SIGKILL);
  wait_status(pid);
  ASSERT_TRUE(caught) << "no checkpoint write was seen in progress";
  // `latest` names a complete checkpoint that loads; the half-written file is never used.
  opd::io::CheckpointDir cd(ck.string());
  auto latest = cd.latest_path();
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->find(".tmp"), std::string::npos);
  opd::io::CheckpointReader r(*latest);
  EXPECT_GT(r.read_int("state/step"), 0);
  for (const auto& d : r.list()) r.verify(d.name);  // every checksum holds
  // And the run resumes from it.
  const pid_t again = spawn({std::string(OPD_BINARY), "run", "job.toml", "--set",
                             "stage.pretrain.steps=" + std::to_string(r.read_int("state/step") + 1)},
                            dir.path());
  EXPECT_EQ(wait_status(again), 0) << read_file(dir / "spawn.err");
  EXPECT_NE(read_file(dir / "spawn.out").find("resuming from"), std::string::npos);
}
