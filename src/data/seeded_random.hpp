// Seeded randomness for data/: seed derivation, bounded draws and shuffles that give the same
// result on every platform and standard library.
#pragma once

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace opd::data {

// splitmix64 finaliser: a bijective 64-bit mixer, used only to turn (seed, stream, index) into
// well-separated seeds for std::mt19937_64 (whose own seeding does not mix nearby seeds well).
inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Streams keep independent uses of one user seed apart (task generation, epoch shuffles, text
// windows), so changing how one of them draws never changes the others.
enum class Stream : uint64_t { ArithTask = 1, EpochShuffle = 2, TextWindow = 3, Mixture = 4 };

inline uint64_t derive_seed(uint64_t seed, Stream stream, uint64_t index) {
  return mix64(mix64(seed ^ mix64(static_cast<uint64_t>(stream))) ^ index);
}

// Uniform integer in [0, n), n >= 1. std::uniform_int_distribution is implementation-defined
// (libstdc++ and libc++ differ), so data made on one machine would differ on another; this
// rejection method (the one of arc4random_uniform) is exact and fully specified.
inline uint64_t uniform_below(std::mt19937_64& gen, uint64_t n) {
  const uint64_t threshold = (0 - n) % n;  // 2^64 mod n: drop the biased low values
  for (;;) {
    const uint64_t x = gen();
    if (x >= threshold) return x % n;
  }
}

// Uniform integer in [lo, hi].
inline int64_t uniform_between(std::mt19937_64& gen, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(uniform_below(gen, static_cast<uint64_t>(hi - lo) + 1));
}

// Fisher-Yates with uniform_below, for the same reason std::shuffle is not used.
template <class T>
void seeded_shuffle(std::vector<T>& v, std::mt19937_64& gen) {
  for (std::size_t i = v.size(); i > 1; --i) {
    const std::size_t j = static_cast<std::size_t>(uniform_below(gen, i));
    std::swap(v[i - 1], v[j]);
  }
}

}  // namespace opd::data
