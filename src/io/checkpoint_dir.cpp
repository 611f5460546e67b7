// io/checkpoint_dir.cpp: CheckpointDir (see checkpoint_dir.hpp).
#include "io/checkpoint_dir.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.hpp"
#include "io/checkpoint.hpp"

namespace opd::io {

namespace fs = std::filesystem;

namespace {

constexpr const char* kLatest = "latest";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string trim(const std::string& s) {
  std::size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  std::size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

void fsync_fd_or_fail(int fd, const std::string& path) {
  if (::fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP)
    input_error(path, std::string("fsync failed: ") + std::strerror(errno), "disk full or failing?");
}

// Why `path` cannot be resumed from, or empty when it can.
std::string why_unusable(const std::string& path) {
  try {
    CheckpointReader r(path);
    return {};
  } catch (const Error& e) {
    return e.what();
  }
}

}  // namespace

CheckpointDir::CheckpointDir(std::string dir) : dir_(std::move(dir)) {}

std::string CheckpointDir::path_for_step(int64_t step) const {
  OPD_CHECK(step >= 0, "negative checkpoint step ", step);
  char name[40];
  std::snprintf(name, sizeof name, "step_%08lld.h5", static_cast<long long>(step));
  return (fs::path(dir_) / name).string();
}

std::optional<int64_t> CheckpointDir::step_of(const std::string& file_name) {
  const std::string prefix = "step_", suffix = ".h5";
  if (file_name.size() <= prefix.size() + suffix.size() || file_name.rfind(prefix, 0) != 0 ||
      !ends_with(file_name, suffix))
    return std::nullopt;
  std::string digits =
      file_name.substr(prefix.size(), file_name.size() - prefix.size() - suffix.size());
  if (digits.size() > 18 || !std::all_of(digits.begin(), digits.end(),
                                         [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return std::stoll(digits);
}

void CheckpointDir::publish(int64_t step) const {
  std::string target = path_for_step(step);
  std::error_code ec;
  OPD_CHECK(fs::is_regular_file(target, ec), "publish(", step, "): ", target,
            " does not exist (commit the checkpoint first)");
  std::string name = fs::path(target).filename().string() + "\n";
  std::string latest = (fs::path(dir_) / kLatest).string();
  std::string tmp = latest + ".tmp";

  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) input_error(tmp, std::string("cannot write: ") + std::strerror(errno));
  ssize_t n = ::write(fd, name.data(), name.size());
  int err = errno;
  if (n != static_cast<ssize_t>(name.size())) {
    ::close(fd);
    ::unlink(tmp.c_str());
    input_error(tmp, std::string("cannot write: ") + std::strerror(n < 0 ? err : ENOSPC));
  }
  fsync_fd_or_fail(fd, tmp);
  ::close(fd);
  if (std::rename(tmp.c_str(), latest.c_str()) != 0) {
    err = errno;
    ::unlink(tmp.c_str());
    input_error(latest, std::string("cannot replace: ") + std::strerror(err));
  }
  int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync_fd_or_fail(dfd, dir_);
    ::close(dfd);
  }
}

std::optional<std::string> CheckpointDir::latest_name() const {
  std::ifstream in(fs::path(dir_) / kLatest);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  std::string name = trim(ss.str());
  if (name.empty()) return std::nullopt;
  return name;
}

std::optional<std::string> CheckpointDir::latest_path(std::string* note) const {
  std::string why;
  if (auto name = latest_name()) {
    std::string path = (fs::path(dir_) / *name).string();
    if (ends_with(path, ".tmp")) {
      why = "`latest` names an unpublished .tmp file";
    } else {
      why = why_unusable(path);
      if (why.empty()) return path;
    }
  } else {
    why = "no `latest` file";
  }
  // Fall back to the newest step file that opens (a crash between rename and rewriting
  // `latest`, or a damaged newest file).
  std::vector<int64_t> steps = published_steps();
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    std::string path = path_for_step(*it);
    std::string bad = why_unusable(path);
    if (bad.empty()) {
      if (note) *note = why + "; using " + path;
      return path;
    }
    why += "; skipped " + path + ": " + bad;
  }
  if (note) *note = why;
  return std::nullopt;
}

std::vector<int64_t> CheckpointDir::published_steps() const {
  std::vector<int64_t> steps;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    if (!e.is_regular_file(ec)) continue;
    auto step = step_of(e.path().filename().string());
    // path_for_step pads to 8 digits; a hand-copied step_120.h5 is not ours to prune or load.
    if (step && e.path() == fs::path(path_for_step(*step))) steps.push_back(*step);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

std::vector<std::string> CheckpointDir::prune(int64_t keep_last, int64_t keep_every) const {
  OPD_CHECK(keep_last >= 0 && keep_every >= 0, "prune(", keep_last, ", ", keep_every, ")");
  std::vector<std::string> removed;
  std::vector<int64_t> steps = published_steps();
  std::set<std::string> keep;
  if (auto name = latest_name()) keep.insert((fs::path(dir_) / *name).string());
  std::size_t n = steps.size();
  for (std::size_t i = 0; i < n; ++i) {
    int64_t s = steps[i];
    bool recent = static_cast<int64_t>(n - i) <= keep_last;
    bool milestone = keep_every > 0 && s % keep_every == 0;
    std::string path = path_for_step(s);
    if (recent || milestone || keep.count(path)) continue;
    std::error_code ec;
    if (fs::remove(path, ec)) removed.push_back(path);
  }
  // Stale temporaries: from crashed saves (step_*.h5.tmp) or a crashed publish (latest.tmp).
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    std::string fname = e.path().filename().string();
    if (!ends_with(fname, ".tmp")) continue;
    if (step_of(fname.substr(0, fname.size() - 4)) || fname == std::string(kLatest) + ".tmp") {
      std::error_code rec;
      if (fs::remove(e.path(), rec)) removed.push_back(e.path().string());
    }
  }
  return removed;
}

}  // namespace opd::io
