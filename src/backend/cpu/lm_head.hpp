// Blocking of the CPU vocabulary-chunked LM head (backend/cpu/lm_head.cpp), exposed so that tests
// can check the scratch bound: logits exist only as one [rows_block, chunk] fp32 block, never
// as [N, V].
#pragma once

#include <cstdint>

namespace opd::backend::cpu {

struct HeadBlocking {
  int64_t rows_block = 0;  // rows of h per block (1 .. kHeadRowsBlock, at most N)
  int64_t chunk = 0;       // vocabulary columns per block (the caller's chunk clamped to [1, V])
  // fp32 logits held at once: rows_block * chunk.
  int64_t logits_floats() const { return rows_block * chunk; }
};

inline constexpr int64_t kHeadRowsBlock = 256;

// The blocking lm_head_stats and lm_head_cross_entropy_backward use for N rows, vocabulary V and
// the caller's vocab chunk (chunk >= 1).
HeadBlocking lm_head_blocking(int64_t n_rows, int64_t vocab, int64_t chunk);

// Bytes of scratch one call allocates (logits block plus per-row state; the backward also holds
// a gathered [rows_block, D] copy of h and of dh). Independent of N beyond the backward's list
// of active rows (4 bytes per row).
int64_t lm_head_scratch_bytes(int64_t n_rows, int64_t vocab, int64_t d_model, int64_t chunk,
                              bool backward);

}  // namespace opd::backend::cpu
