// TokenBatch: a [batch, seq_len] block of next-token training inputs and targets.
#pragma once

#include <cstdint>
#include <vector>

namespace opd::data {

// Row-major [batch, seq_len]. targets[b, t] is the token that should follow inputs[b, 0..t], or -1
// where there is nothing to learn (masked or past the sequence's end); inputs past the end hold
// the pad id. Because attention is causal and padding only follows real tokens, the pad value
// never influences a position that has a target.
struct TokenBatch {
  int64_t batch = 0, seq_len = 0;
  std::vector<int32_t> inputs, targets;
  // Where each row came from: the sequence index (BatchSampler) or the window's start offset
  // (TextWindowSampler). For logs, debugging and tests.
  std::vector<int64_t> sources;

  int32_t input(int64_t b, int64_t t) const {
    return inputs[static_cast<std::size_t>(b * seq_len + t)];
  }
  int32_t target(int64_t b, int64_t t) const {
    return targets[static_cast<std::size_t>(b * seq_len + t)];
  }
  // Number of targets that are not -1.
  int64_t num_targets() const;
};

inline int64_t TokenBatch::num_targets() const {
  int64_t n = 0;
  for (int32_t t : targets) n += t >= 0;
  return n;
}

}  // namespace opd::data
