// Running the opd binary from tests: exit status, stdout and stderr of one command, and scratch
// directories that remove themselves.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace opd::testing {

struct ProcessResult {
  int status = -1;  // exit status (128 + signal when killed by one)
  std::string out, err;
};

// Runs `command` with /bin/sh in directory `cwd`, capturing both streams.
ProcessResult run_command(const std::string& command, const std::filesystem::path& cwd);
// Runs the opd binary under test (OPD_BINARY) with `args`. With OPD_TEST_DEVICE=cuda in the
// environment, an `opd run` that sets no run.device gets --set run.device=cuda appended.
ProcessResult run_opd(const std::string& args, const std::filesystem::path& cwd);
// The same under `mpirun --oversubscribe -np ranks`; `env` ("NAME=value ") precedes the command.
ProcessResult run_mpi(const std::string& args, const std::filesystem::path& cwd,
                      const std::string& env = "", int ranks = 2);
// The number of opd's own error lines in `err` (mpirun adds its own report of a failed rank).
long error_lines(const std::string& err);

// A fresh directory removed with the object (kept, and named on stderr, with OPD_KEEP_SCRATCH=1).
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag);
  ~ScratchDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& p) const { return path_ / p; }

 private:
  std::filesystem::path path_;
};

std::string read_file(const std::filesystem::path& p);
void write_file(const std::filesystem::path& p, const std::string& text);
// One JSON object per line (metrics.jsonl and the like).
std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& p);

// Every path under `dir` with its size, sorted: a snapshot to compare before and after.
std::string tree_snapshot(const std::filesystem::path& dir);

}  // namespace opd::testing
