// tests/io/io_test_util.hpp: helpers shared by the io tests: a temporary directory under /tmp
// that removes itself, whole-file read/write, and an assertion that a call throws an Input
// opd::Error whose message contains given text.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <sstream>
#include <string>

#include "core/error.hpp"

namespace opd::io::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/opd_io_test_XXXXXX";
    char* p = ::mkdtemp(tmpl.data());
    if (!p) throw std::runtime_error("mkdtemp failed");
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// Runs `f`, expecting an Input opd::Error whose what() contains every string in `parts`.
inline ::testing::AssertionResult throws_input(const std::function<void()>& f,
                                               std::initializer_list<std::string> parts) {
  try {
    f();
  } catch (const opd::Error& e) {
    if (e.kind() != opd::ErrorKind::Input)
      return ::testing::AssertionFailure() << "not an Input error: " << e.what();
    std::string what = e.what();
    for (const auto& p : parts)
      if (what.find(p) == std::string::npos)
        return ::testing::AssertionFailure() << "message lacks '" << p << "': " << what;
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "not an opd::Error: " << e.what();
  }
  return ::testing::AssertionFailure() << "no exception";
}

}  // namespace opd::io::testing
