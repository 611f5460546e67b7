// libFuzzer target for the strict JSONL dataset loader (data/dataset.hpp): any input must either
// load into examples or be refused with an opd Input error naming its line; anything else (another
// exception, a sanitizer report) is a finding. The loader reads a path, so each input goes
// through a file.
//   Build: CC=clang CXX=clang++ cmake -S . -B build-fuzz -DOPD_FUZZ=ON -DOPD_CUDA=OFF
//          cmake --build build-fuzz --target fuzz_jsonl
//   Run:   build-fuzz/tests/fuzz/fuzz_jsonl -max_total_time=600 CORPUS_DIR tests/fuzz/corpus/jsonl
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "core/error.hpp"
#include "data/dataset.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/opd_fuzz_jsonl_" + std::to_string(getpid()) + ".jsonl";
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    for (const opd::data::Example& e : opd::data::load_jsonl(path))
      if (e.prompt.size() > size) __builtin_trap();  // nothing longer than the input itself
  } catch (const opd::Error& e) {
    if (e.kind() != opd::ErrorKind::Input) __builtin_trap();
  }
  return 0;
}
