// Philox4x32-10 counter-based random numbers (Salmon et al., SC'11, as in Random123) and RngStream,
// a stream addressed by (seed, purpose, id) whose whole state is one 64-bit position.
#pragma once

#include <array>
#include <cstdint>

namespace opd::core {

// The Philox4x32 block function with 10 rounds: a keyed bijection of the 128-bit counter. It is
// pure, so any block of any stream can be computed directly (also on a GPU, from make_counter()).
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// What a stream is used for. Distinct purposes give unrelated streams even for equal ids, so e.g.
// the data order of sequence 7 never correlates with the sampling noise of sequence 7.
// Values must stay below 256 (they share a counter word with the id; see RngStream). Scoped so
// that the short names (Init, Data) do not leak into opd::core; write RngPurpose::Sampling.
enum class RngPurpose : uint32_t {
  Init = 1,      // parameter initialisation; id = a parameter's global index
  Data = 2,      // data order, prompt selection
  Sampling = 3,  // student rollout token sampling; id = a global sequence index
  Eval = 4,      // evaluation sampling
  TaskGen = 5,   // synthetic task generation
};

// One random stream. Key = the seed (its two 32-bit halves). The 128-bit counter is
//   word 0, 1: block index (low, high), block = position / 4
//   word 2:    id bits 0..31
//   word 3:    purpose << 24 | id bits 32..55
// so distinct (purpose, id) pairs map to disjoint counter ranges and never collide, and a stream
// depends on (seed, purpose, id) only: not on the number of ranks, sequences or other streams.
// Ids must be < 2^56 and purposes < 2^8 (checked).
//
// position() is the number of 32-bit words consumed so far. Each draw consumes a fixed number of
// words (next_u32, uniform: 1; next_u64, uniform_double, normal: 2; normal_pair: 2), so a stream
// restored with set_position(p) continues bit-identically with what the original drew after p.
class RngStream {
 public:
  static constexpr uint64_t kMaxId = (uint64_t{1} << 56) - 1;
  static constexpr uint32_t kMaxPurpose = 255;

  RngStream(uint64_t seed, RngPurpose purpose, uint64_t id)
      : RngStream(seed, static_cast<uint32_t>(purpose), id) {}
  RngStream(uint64_t seed, uint32_t purpose, uint64_t id);  // for purposes not (yet) in the enum

  uint32_t next_u32();
  uint64_t next_u64();  // two words, first one in the high half
  // Uniform in [0, n) without modulo bias (Lemire's multiply-and-reject); n > 0. The number of
  // words consumed depends on the draws (rejections are rare), still deterministic.
  uint32_t below(uint32_t n);
  float uniform();          // [0, 1), 24 random bits: every value is exactly representable
  double uniform_double();  // [0, 1), 53 random bits
  // Standard normal by Box–Muller on two words (computed in double, rounded once to float). The
  // second Box–Muller value is dropped so that position() stays the whole state.
  float normal();
  std::array<float, 2> normal_pair();  // both Box–Muller values from the same two words

  uint64_t position() const { return position_; }
  void set_position(uint64_t position) { position_ = position; }

  uint64_t seed() const { return seed_; }
  uint32_t purpose() const { return purpose_; }
  uint64_t id() const { return id_; }

  std::array<uint32_t, 2> key() const;
  // The Philox counter of block `block` of stream (purpose, id): the layout described above.
  static std::array<uint32_t, 4> make_counter(uint32_t purpose, uint64_t id, uint64_t block);

 private:
  uint64_t seed_;
  uint32_t purpose_;
  uint64_t id_;
  uint64_t position_ = 0;
  // Cache of the last computed block, so four consecutive words cost one Philox call.
  uint64_t cached_block_ = ~uint64_t{0};
  std::array<uint32_t, 4> cached_{};
};

}  // namespace opd::core
