// Byte-pair merging by rank: the merge table (pair of token ids -> rank and merged id) and the
// loop that turns one pre-token's bytes into token ids.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace opd::data {

struct BpeMerge {
  int32_t left, right, merged;
  uint32_t rank;  // lower merges first
};

// An open-addressing hash table from (left, right) to (rank, merged): the lookup the merge loop
// does for every adjacent pair, kept flat because it dominates encoding time.
class BpeMergeTable {
 public:
  BpeMergeTable() = default;
  // Later entries for the same pair replace earlier ones (as a Hugging Face merges list does).
  explicit BpeMergeTable(const std::vector<BpeMerge>& merges);

  // The merge of (left, right), or nullptr.
  const BpeMerge* find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = pack(left, right);
    for (std::size_t s = slot(key);; s = (s + 1) & mask_) {
      const Slot& e = slots_[s];
      if (e.key == key) return &e.merge;
      if (e.key == kEmpty) return nullptr;
    }
  }
  std::size_t size() const { return count_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  struct Slot {
    uint64_t key = kEmpty;
    BpeMerge merge{};
  };
  static uint64_t pack(int32_t a, int32_t b) {
    return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
  }
  std::size_t slot(uint64_t key) const {
    return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ULL) >> shift_) & mask_;
  }
  std::vector<Slot> slots_;
  std::size_t mask_ = 0, count_ = 0;
  int shift_ = 0;
};

// Merges ids (initially one per byte) in place: repeatedly the adjacent pair of lowest rank,
// the leftmost on ties, until no adjacent pair has a merge. This is both tiktoken's rule (rank
// of the concatenation) and Hugging Face's BPE (rank of the merge rule).
void bpe_merge(const BpeMergeTable& table, std::vector<int32_t>& ids);

}  // namespace opd::data
