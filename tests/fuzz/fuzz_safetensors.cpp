// libFuzzer target for the safetensors header parser (io/safetensors_format.hpp): any input must
// either parse into entries that keep the parser's promises (offsets inside the data section,
// sizes equal to dtype x shape, no overlaps) or be refused with an opd Input error. Anything else
// (another exception, a sanitizer report, a trap below) is a finding.
//   Build: CC=clang CXX=clang++ cmake -S . -B build-fuzz -DOPD_FUZZ=ON -DOPD_CUDA=OFF
//          cmake --build build-fuzz --target fuzz_safetensors
//   Run:   build-fuzz/tests/fuzz/fuzz_safetensors -dict=tests/fuzz/safetensors.dict \
//            -max_total_time=600 CORPUS_DIR tests/fuzz/corpus/safetensors
#include <cstddef>
#include <cstdint>

#include "core/error.hpp"
#include "io/safetensors_format.hpp"

using namespace opd::io::safetensors;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const Header h = parse_buffer(data, size, "fuzz");
    if (h.file_size != size || h.data_start > size) __builtin_trap();
    uint64_t prev_end = 0;
    for (const TensorEntry& t : h.tensors) {
      if (t.begin > t.end || t.end > h.data_bytes()) __builtin_trap();
      uint64_t n = dtype_size(t.dtype);
      for (int64_t d : t.shape) {
        if (d < 0) __builtin_trap();
        n *= static_cast<uint64_t>(d);
      }
      if (n != t.bytes()) __builtin_trap();
      if (t.begin != t.end) {
        if (t.begin < prev_end) __builtin_trap();
        prev_end = t.end;
      }
      // Touch every byte the entry claims: ASan reports a read outside the input.
      const uint8_t* p = data + h.data_start + t.begin;
      volatile uint8_t sink = 0;
      for (uint64_t i = 0; i < t.bytes(); i += 4096) sink = static_cast<uint8_t>(sink ^ p[i]);
      if (t.bytes() > 0) sink = static_cast<uint8_t>(sink ^ p[t.bytes() - 1]);
    }
  } catch (const opd::Error& e) {
    if (e.kind() != opd::ErrorKind::Input) __builtin_trap();
  }
  return 0;
}
