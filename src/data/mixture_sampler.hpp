// Prompts drawn from several sets by weight (content alignment: mix the teacher's own prompts
// with others). Each draw is a pure function of (seed, draw index), so resuming needs no state
// beyond the step.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace opd::data {

class MixtureSampler {
 public:
  // sizes[i] examples in set i, drawn with probability weights[i] / sum(weights). Input errors for
  // empty sets, negative weights or weights that sum to zero.
  MixtureSampler(std::vector<int64_t> sizes, std::vector<double> weights, uint64_t seed);
  // Draw number `index`: (set, example within the set), uniform within the chosen set.
  std::pair<int, int64_t> draw(uint64_t index) const;
  // `count` consecutive draws starting at draw number first.
  std::vector<std::pair<int, int64_t>> draws(uint64_t first, int64_t count) const;

 private:
  std::vector<int64_t> sizes_;
  std::vector<double> cumulative_;  // normalised cumulative weights
  uint64_t seed_;
};

}  // namespace opd::data
