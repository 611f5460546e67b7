// BatchSampler: fixed-shape batches from a set of token sequences, in epochs of a seeded
// shuffle, resumable exactly from a single cursor.
#pragma once

#include <cstdint>
#include <vector>

#include "data/sequence.hpp"
#include "data/token_batch.hpp"

namespace opd::data {

// What to do with a sequence longer than seq_len + 1 tokens (it would not fit one row).
enum class Overlong {
  Reject,    // Input error at construction naming the sequence index and the lengths
  Truncate,  // keep its first seq_len + 1 tokens (the tail is not learned)
};

class BatchSampler {
 public:
  BatchSampler(std::vector<TokenSequence> sequences, int64_t batch_size, int64_t seq_len,
               uint64_t seed, int32_t pad_id, Overlong overlong = Overlong::Reject);

  // The next batch_size sequences in order (an epoch boundary may fall inside a batch: the order
  // is one endless stream, epoch after epoch). Advances the cursor by batch_size.
  TokenBatch next();

  // Sequences consumed so far. The order is a pure function of (seed, epoch), so restoring the
  // cursor alone (from a checkpoint) reproduces every later batch exactly.
  uint64_t cursor() const { return cursor_; }
  void set_cursor(uint64_t cursor) { cursor_ = cursor; }

  int64_t size() const { return static_cast<int64_t>(sequences_.size()); }
  uint64_t epoch() const { return cursor_ / sequences_.size(); }
  int64_t batch_size() const { return batch_size_; }
  int64_t seq_len() const { return seq_len_; }
  // How many sequences were cut to fit (always 0 with Overlong::Reject).
  int64_t num_truncated() const { return num_truncated_; }

  // The order of sequence indices in epoch e (a permutation of 0..size()-1).
  std::vector<int64_t> epoch_order(uint64_t e) const;

 private:
  const std::vector<int64_t>& order_for(uint64_t e) const;

  std::vector<TokenSequence> sequences_;
  int64_t batch_size_, seq_len_;
  uint64_t seed_;
  int32_t pad_id_;
  int64_t num_truncated_ = 0;
  uint64_t cursor_ = 0;
  // Cache of one epoch's order: derived state only, recomputed when the epoch changes.
  mutable uint64_t cached_epoch_ = UINT64_MAX;
  mutable std::vector<int64_t> cached_order_;
};

}  // namespace opd::data
