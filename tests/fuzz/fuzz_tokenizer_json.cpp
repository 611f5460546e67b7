// libFuzzer target for the Hugging Face tokenizer.json loader (data/bpe_hf_loader.hpp) and the
// tokenizer it builds: any input must either load — and then encode and decode a fixed text
// without fault — or be refused with an opd Input error. Anything else (another exception, a
// sanitizer report) is a finding. The loader reads a path, so each input goes through a file.
//   Build: CC=clang CXX=clang++ cmake -S . -B build-fuzz -DOPD_FUZZ=ON -DOPD_CUDA=OFF
//          cmake --build build-fuzz --target fuzz_tokenizer_json
//   Run:   build-fuzz/tests/fuzz/fuzz_tokenizer_json -max_total_time=600 CORPUS_DIR \
//            tests/fuzz/corpus/tokenizer_json
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "core/error.hpp"
#include "data/bpe_hf_loader.hpp"
#include "data/bpe_tokenizer.hpp"

namespace {
std::string scratch_file() {
  static const std::string path = "/tmp/opd_fuzz_tokenizer_" + std::to_string(getpid()) + ".json";
  return path;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  {
    std::ofstream f(scratch_file(), std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const opd::data::BpeTokenizer tok(opd::data::load_hf_tokenizer_json(scratch_file()));
    const std::vector<int32_t> ids = tok.encode("Hello world! 123 \xc3\xa9t\xc3\xa9 <|im_start|>  x\n");
    (void)tok.decode(ids);
  } catch (const opd::Error& e) {
    if (e.kind() != opd::ErrorKind::Input) __builtin_trap();
  }
  return 0;
}
