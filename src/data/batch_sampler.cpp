// BatchSampler: validation of sequences against the row length, epoch orders, batch assembly.
#include "data/batch_sampler.hpp"

#include <numeric>

#include "core/error.hpp"
#include "data/seeded_random.hpp"

namespace opd::data {

BatchSampler::BatchSampler(std::vector<TokenSequence> sequences, int64_t batch_size,
                           int64_t seq_len, uint64_t seed, int32_t pad_id, Overlong overlong)
    : sequences_(std::move(sequences)),
      batch_size_(batch_size),
      seq_len_(seq_len),
      seed_(seed),
      pad_id_(pad_id) {
  if (sequences_.empty()) input_error("batch sampler", "no sequences to sample from");
  if (batch_size < 1)
    input_error("batch sampler", detail::concat("batch size is ", batch_size), "use at least 1");
  if (seq_len < 1)
    input_error("batch sampler", detail::concat("seq_len is ", seq_len), "use at least 1");
  const std::size_t max_tokens = static_cast<std::size_t>(seq_len) + 1;
  for (std::size_t i = 0; i < sequences_.size(); ++i) {
    auto& s = sequences_[i];
    OPD_CHECK(s.tokens.size() == s.loss_mask.size(), "sequence ", i, " has ", s.tokens.size(),
              " tokens but ", s.loss_mask.size(), " mask entries");
    if (s.tokens.size() <= max_tokens) continue;
    if (overlong == Overlong::Reject)
      input_error(
          detail::concat("example ", i),
          detail::concat("has ", s.tokens.size(), " tokens, more than seq_len + 1 = ", max_tokens),
          "raise seq_len, shorten the example, or let the sampler truncate");
    s.tokens.resize(max_tokens);
    s.loss_mask.resize(max_tokens);
    ++num_truncated_;
  }
}

std::vector<int64_t> BatchSampler::epoch_order(uint64_t e) const {
  std::vector<int64_t> order(sequences_.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  // The generator of epoch e is seeded from (seed, e) alone, so any epoch's order can be
  // recomputed without replaying earlier ones.
  std::mt19937_64 gen(derive_seed(seed_, Stream::EpochShuffle, e));
  seeded_shuffle(order, gen);
  return order;
}

const std::vector<int64_t>& BatchSampler::order_for(uint64_t e) const {
  if (e != cached_epoch_) {
    cached_order_ = epoch_order(e);
    cached_epoch_ = e;
  }
  return cached_order_;
}

TokenBatch BatchSampler::next() {
  TokenBatch batch;
  batch.batch = batch_size_;
  batch.seq_len = seq_len_;
  const std::size_t cells = static_cast<std::size_t>(batch_size_ * seq_len_);
  batch.inputs.assign(cells, pad_id_);
  batch.targets.assign(cells, -1);
  batch.sources.resize(static_cast<std::size_t>(batch_size_));
  const uint64_t n = sequences_.size();
  for (int64_t b = 0; b < batch_size_; ++b) {
    const uint64_t pos = cursor_ + static_cast<uint64_t>(b);
    const int64_t idx = order_for(pos / n)[pos % n];
    batch.sources[static_cast<std::size_t>(b)] = idx;
    const TokenSequence& s = sequences_[static_cast<std::size_t>(idx)];
    // inputs = tokens[0 .. L-2], targets = tokens[1 .. L-1] where masked in.
    const std::size_t steps = s.tokens.empty() ? 0 : s.tokens.size() - 1;
    int32_t* in = batch.inputs.data() + b * seq_len_;
    int32_t* tg = batch.targets.data() + b * seq_len_;
    for (std::size_t t = 0; t < steps; ++t) {
      in[t] = s.tokens[t];
      tg[t] = s.loss_mask[t + 1] ? s.tokens[t + 1] : -1;
    }
  }
  cursor_ += static_cast<uint64_t>(batch_size_);
  return batch;
}

}  // namespace opd::data
