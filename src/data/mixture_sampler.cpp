#include "data/mixture_sampler.hpp"

#include <algorithm>
#include <cmath>
#include <random>

#include "core/error.hpp"
#include "data/seeded_random.hpp"

namespace opd::data {

MixtureSampler::MixtureSampler(std::vector<int64_t> sizes, std::vector<double> weights,
                               uint64_t seed)
    : sizes_(std::move(sizes)), seed_(seed) {
  OPD_CHECK(sizes_.size() == weights.size() && !sizes_.empty(), "one weight per prompt set");
  double total = 0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    if (sizes_[i] <= 0) input_error("prompt set " + std::to_string(i), "is empty", "give it prompts");
    if (!(weights[i] >= 0)) input_error("prompt set " + std::to_string(i), "has a negative weight");
    total += weights[i];
  }
  if (!(total > 0)) input_error("prompt sets", "weights sum to zero", "give a set a positive weight");
  double acc = 0;
  for (double w : weights) cumulative_.push_back(acc += w / total);
  cumulative_.back() = 1.0;
}

std::pair<int, int64_t> MixtureSampler::draw(uint64_t index) const {
  // Two independent uniforms per draw from a generator seeded by (seed, index).
  std::mt19937_64 gen(derive_seed(seed_, Stream::Mixture, index));
  const double u = static_cast<double>(gen() >> 11) * 0x1.0p-53;
  const int set = static_cast<int>(std::upper_bound(cumulative_.begin(), cumulative_.end(), u) -
                                   cumulative_.begin());
  const int s = std::min(set, static_cast<int>(sizes_.size()) - 1);
  return {s, static_cast<int64_t>(uniform_below(gen, static_cast<uint64_t>(sizes_[static_cast<std::size_t>(s)])))};
}

std::vector<std::pair<int, int64_t>> MixtureSampler::draws(uint64_t first, int64_t count) const {
  std::vector<std::pair<int, int64_t>> out;
  for (int64_t i = 0; i < count; ++i) out.push_back(draw(first + static_cast<uint64_t>(i)));
  return out;
}

}  // namespace opd::data
