// A sequence of ops recorded once and replayed as one unit: on a GPU a CUDA graph, so that a
// decode step's hundreds of small kernels cost one launch instead of one each (launch overhead,
// not memory bandwidth, bounds a small batch's decode otherwise). On the host the ops just run.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "core/tensor.hpp"

namespace opd::backend {

class Recording {
 public:
  Recording();
  ~Recording();
  Recording(Recording&&) noexcept;
  Recording& operator=(Recording&&) noexcept;

  // Runs the ops fn issues on `device`. Calls with the same key promise the same ops on the same
  // tensors (the same addresses and sizes; only the values in them differ), and fn must neither
  // read device memory on the host nor synchronise. On CUDA the first call with a key runs fn as
  // it is (plans, workspaces and allocations settle), the second records it as a graph and
  // launches that, later ones launch the graph; a new key starts over. If fn cannot be recorded
  // (an op that is not capturable) it runs as it is for that key, with one warning.
  // OPD_CUDA_GRAPHS=0 turns recording off.
  void run(core::Device device, uint64_t key, const std::function<void()>& fn);
  // Forgets the graph (and releases its memory).
  void reset();

  // Whether a graph is recorded now.
  bool recorded() const;

  // Turns recording on or off for the process (tests and `opd bench decode` compare both); the
  // default is on unless OPD_CUDA_GRAPHS=0.
  static void set_enabled(bool on);
  static bool enabled();
  // Graph launches so far in this process (tests check that replays happened).
  static uint64_t launches();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Mixes v into a running key (FNV-1a style over the 8 bytes).
inline uint64_t mix_key(uint64_t key, uint64_t v) {
  for (int i = 0; i < 8; ++i) key = (key ^ ((v >> (8 * i)) & 0xffu)) * 1099511628211ull;
  return key;
}
inline constexpr uint64_t kKeySeed = 14695981039346656037ull;

}  // namespace opd::backend
