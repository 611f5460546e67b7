// ZeRO-1 partition: which data-parallel rank owns (keeps the optimizer state of, and updates)
// each parameter. Whole parameters are assigned, largest first, each to the least-loaded rank,
// so the state per rank is balanced and every tensor keeps one owner.
#pragma once

#include <cstdint>
#include <vector>

namespace opd::parallel {

// owner[i] in [0, ranks) for each parameter size; deterministic (ties by lower index / rank).
std::vector<int> zero_owners(const std::vector<int64_t>& sizes, int ranks);

}  // namespace opd::parallel
