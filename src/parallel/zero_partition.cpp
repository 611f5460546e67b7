#include "parallel/zero_partition.hpp"

#include <algorithm>
#include <numeric>

namespace opd::parallel {

std::vector<int> zero_owners(const std::vector<int64_t>& sizes, int ranks) {
  std::vector<std::size_t> order(sizes.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return sizes[a] > sizes[b]; });
  std::vector<int64_t> load(static_cast<std::size_t>(std::max(1, ranks)), 0);
  std::vector<int> owner(sizes.size(), 0);
  for (std::size_t i : order) {
    const auto r = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    owner[i] = static_cast<int>(r);
    load[r] += sizes[i];
  }
  return owner;
}

}  // namespace opd::parallel
