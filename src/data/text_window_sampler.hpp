// TextWindowSampler: batches of random fixed-length windows from one long token stream (a text
// corpus for pretraining), deterministic in (seed, cursor).
#pragma once

#include <cstdint>
#include <vector>

#include "data/token_batch.hpp"

namespace opd::data {

class TextWindowSampler {
 public:
  // tokens must hold at least seq_len + 1 tokens (an Input error otherwise).
  TextWindowSampler(std::vector<int32_t> tokens, int64_t batch_size, int64_t seq_len,
                    uint64_t seed);

  // batch_size windows of seq_len + 1 tokens; every target is the next token of the stream.
  TokenBatch next();

  // Windows drawn so far; window w starts at a position drawn from (seed, w) only, so restoring
  // the cursor reproduces every later batch.
  uint64_t cursor() const { return cursor_; }
  void set_cursor(uint64_t cursor) { cursor_ = cursor; }

  int64_t num_tokens() const { return static_cast<int64_t>(tokens_.size()); }
  // Start offset of window w, uniform in [0, num_tokens - seq_len - 1].
  int64_t window_start(uint64_t w) const;

 private:
  std::vector<int32_t> tokens_;
  int64_t batch_size_, seq_len_;
  uint64_t seed_;
  uint64_t cursor_ = 0;
};

}  // namespace opd::data
