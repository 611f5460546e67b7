// The merge table and the merge loop: a direct scan for short pieces (almost all of them), a
// heap with lazy invalidation for long ones so that a 100 kB run of one character stays
// O(n log n).
#include "data/bpe_merges.hpp"

#include <limits>
#include <queue>

namespace opd::data {

BpeMergeTable::BpeMergeTable(const std::vector<BpeMerge>& merges) {
  std::size_t cap = 16;
  while (cap < 2 * merges.size()) cap *= 2;
  slots_.assign(cap, Slot{});
  mask_ = cap - 1;
  shift_ = 64;
  for (std::size_t c = cap; c > 1; c >>= 1) --shift_;
  for (const BpeMerge& m : merges) {
    const uint64_t key = pack(m.left, m.right);
    std::size_t s = slot(key);
    while (slots_[s].key != kEmpty && slots_[s].key != key) s = (s + 1) & mask_;
    if (slots_[s].key == kEmpty) ++count_;
    slots_[s].key = key;
    slots_[s].merge = m;
  }
}

namespace {

constexpr uint32_t kNoRank = std::numeric_limits<uint32_t>::max();

void merge_short(const BpeMergeTable& table, std::vector<int32_t>& ids) {
  // ranks[i]: the rank of merging ids[i] and ids[i + 1].
  std::vector<uint32_t> ranks(ids.size());
  auto rank_at = [&](std::size_t i) {
    const BpeMerge* m = table.find(ids[i], ids[i + 1]);
    return m ? m->rank : kNoRank;
  };
  for (std::size_t i = 0; i + 1 < ids.size(); ++i) ranks[i] = rank_at(i);
  while (ids.size() > 1) {
    std::size_t best = 0;
    for (std::size_t i = 1; i + 1 < ids.size(); ++i)
      if (ranks[i] < ranks[best]) best = i;
    if (ranks[best] == kNoRank) break;
    ids[best] = table.find(ids[best], ids[best + 1])->merged;
    ids.erase(ids.begin() + best + 1);
    ranks.erase(ranks.begin() + best + 1);
    if (best + 1 < ids.size()) ranks[best] = rank_at(best);
    else ranks[best] = kNoRank;
    if (best > 0) ranks[best - 1] = rank_at(best - 1);
  }
}

void merge_long(const BpeMergeTable& table, std::vector<int32_t>& ids) {
  const std::size_t n = ids.size();
  constexpr std::size_t kNone = std::numeric_limits<std::size_t>::max();
  std::vector<std::size_t> prev(n), next(n);
  for (std::size_t i = 0; i < n; ++i) {
    prev[i] = i == 0 ? kNone : i - 1;
    next[i] = i + 1 < n ? i + 1 : kNone;
  }
  std::vector<bool> alive(n, true);
  // (rank, left position, left id, right id): stale entries are recognised and skipped.
  struct Entry {
    uint32_t rank;
    std::size_t pos;
    int32_t left, right;
    bool operator>(const Entry& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  auto push = [&](std::size_t i) {
    if (i == kNone || next[i] == kNone) return;
    if (const BpeMerge* m = table.find(ids[i], ids[next[i]]))
      heap.push({m->rank, i, ids[i], ids[next[i]]});
  };
  for (std::size_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Entry e = heap.top();
    heap.pop();
    const std::size_t j = next[e.pos];
    if (!alive[e.pos] || j == kNone || ids[e.pos] != e.left || ids[j] != e.right) continue;
    ids[e.pos] = table.find(e.left, e.right)->merged;
    alive[j] = false;
    next[e.pos] = next[j];
    if (next[j] != kNone) prev[next[j]] = e.pos;
    push(prev[e.pos]);
    push(e.pos);
  }
  std::size_t w = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (alive[i]) ids[w++] = ids[i];
  ids.resize(w);
}

}  // namespace

void bpe_merge(const BpeMergeTable& table, std::vector<int32_t>& ids) {
  if (ids.size() < 2) return;
  if (ids.size() <= 64) merge_short(table, ids);
  else merge_long(table, ids);
}

}  // namespace opd::data
