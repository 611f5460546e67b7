// TextWindowSampler: window positions from (seed, window index), batch assembly.
#include "data/text_window_sampler.hpp"

#include <random>

#include "core/error.hpp"
#include "data/seeded_random.hpp"

namespace opd::data {

TextWindowSampler::TextWindowSampler(std::vector<int32_t> tokens, int64_t batch_size,
                                     int64_t seq_len, uint64_t seed)
    : tokens_(std::move(tokens)), batch_size_(batch_size), seq_len_(seq_len), seed_(seed) {
  if (batch_size < 1)
    input_error("text sampler", detail::concat("batch size is ", batch_size), "use at least 1");
  if (seq_len < 1)
    input_error("text sampler", detail::concat("seq_len is ", seq_len), "use at least 1");
  if (static_cast<int64_t>(tokens_.size()) < seq_len + 1)
    input_error("text sampler",
                detail::concat("the text has ", tokens_.size(),
                               " tokens, fewer than one window of seq_len + 1 = ", seq_len + 1),
                "use a longer text or a shorter seq_len");
}

int64_t TextWindowSampler::window_start(uint64_t w) const {
  // One explicitly seeded generator per window: any window is reachable directly from the cursor.
  std::mt19937_64 gen(derive_seed(seed_, Stream::TextWindow, w));
  const uint64_t starts = tokens_.size() - static_cast<uint64_t>(seq_len_);
  return static_cast<int64_t>(uniform_below(gen, starts));
}

TokenBatch TextWindowSampler::next() {
  TokenBatch batch;
  batch.batch = batch_size_;
  batch.seq_len = seq_len_;
  const std::size_t cells = static_cast<std::size_t>(batch_size_ * seq_len_);
  batch.inputs.resize(cells);
  batch.targets.resize(cells);
  batch.sources.resize(static_cast<std::size_t>(batch_size_));
  for (int64_t b = 0; b < batch_size_; ++b) {
    const int64_t start = window_start(cursor_ + static_cast<uint64_t>(b));
    batch.sources[static_cast<std::size_t>(b)] = start;
    for (int64_t t = 0; t < seq_len_; ++t) {
      batch.inputs[static_cast<std::size_t>(b * seq_len_ + t)] =
          tokens_[static_cast<std::size_t>(start + t)];
      batch.targets[static_cast<std::size_t>(b * seq_len_ + t)] =
          tokens_[static_cast<std::size_t>(start + t + 1)];
    }
  }
  cursor_ += static_cast<uint64_t>(batch_size_);
  return batch;
}

}  // namespace opd::data
