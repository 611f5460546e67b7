#include "testing/process.hpp"

#include <cstdio>
#include <cstdlib>

#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <set>
#include <sstream>

namespace opd::testing {

namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

void write_file(const fs::path& p, const std::string& text) {
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

ProcessResult run_command(const std::string& command, const fs::path& cwd) {
  static int counter = 0;
  const fs::path base = fs::temp_directory_path() /
                        ("opd-proc-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  const std::string out = base.string() + ".out", err = base.string() + ".err";
  const std::string full = "cd '" + cwd.string() + "' && " + command + " >'" + out + "' 2>'" + err + "'";
  const int raw = std::system(full.c_str());
  ProcessResult r;
  if (WIFEXITED(raw)) r.status = WEXITSTATUS(raw);
  else if (WIFSIGNALED(raw)) r.status = 128 + WTERMSIG(raw);
  r.out = read_file(out);
  r.err = read_file(err);
  fs::remove(out);
  fs::remove(err);
  return r;
}

namespace {
// The opd binary of this build; $OPD_BINARY overrides it where the build tree is not (the GPU
// bundle carries the binary to another machine).
std::string opd_binary() {
  const char* env = std::getenv("OPD_BINARY");
  return env && *env ? env : OPD_BINARY_PATH;
}
}  // namespace

namespace {
// OPD_TEST_DEVICE=cuda: every `opd run` that names no device runs on that one (the device
// emulation build runs the job tests this way: tools/test).
std::string with_test_device(const std::string& args) {
  const char* device = std::getenv("OPD_TEST_DEVICE");
  if (!device || !*device || args.rfind("run ", 0) != 0 || args.find("run.device") != std::string::npos)
    return args;
  return args + " --set run.device=" + device;
}
}  // namespace

ProcessResult run_opd(const std::string& args, const fs::path& cwd) {
  return run_command("'" + opd_binary() + "' " + with_test_device(args), cwd);
}

ProcessResult run_mpi(const std::string& args, const fs::path& cwd, const std::string& env,
                      int ranks) {
  return run_command(env +
                         "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
                         "OPENBLAS_NUM_THREADS=1 mpirun --oversubscribe -np " +
                         std::to_string(ranks) + " '" + opd_binary() + "' " + with_test_device(args),
                     cwd);
}

long error_lines(const std::string& err) {
  long n = 0;
  std::istringstream in(err);
  std::string line;
  while (std::getline(in, line)) n += line.rfind("opd: error: ", 0) == 0;
  return n;
}

ScratchDir::ScratchDir(const std::string& tag) {
  std::random_device rd;
  path_ = fs::temp_directory_path() /
          ("opd-test-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
  fs::create_directories(path_);
}

ScratchDir::~ScratchDir() {
  if (const char* keep = std::getenv("OPD_KEEP_SCRATCH"); keep && std::string(keep) == "1") {
    std::fprintf(stderr, "kept %s (OPD_KEEP_SCRATCH=1)\n", path_.c_str());
    return;
  }
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::vector<nlohmann::json> read_jsonl(const fs::path& p) {
  std::vector<nlohmann::json> rows;
  std::istringstream in(read_file(p));
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

std::string tree_snapshot(const fs::path& dir) {
  if (!fs::exists(dir)) return "(absent)";
  std::set<std::string> rows;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    std::string row = fs::relative(e.path(), dir).string();
    if (e.is_regular_file()) row += " " + std::to_string(e.file_size());
    rows.insert(row);
  }
  std::string s;
  for (const auto& r : rows) s += r + "\n";
  return s;
}

}  // namespace opd::testing
