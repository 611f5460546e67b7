// CPU token embedding: row gather (forward) and scatter-add into the table (backward). A table
// may be one vocabulary shard (VocabRange): ids outside it give zero rows and add nothing.
#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cstdint>

#include "backend/cpu/cpu_ops.hpp"
#include "backend/cpu/kernel_support.hpp"
#include "core/error.hpp"

namespace opd::backend::cpu {

namespace {

using core::DType;

// Columns owned by one work item of the backward (each item loops over all ids, so two ids
// naming the same table row never race).
constexpr int64_t kColBlock = 512;

struct EmbShape {
  int64_t v = 0, d = 0, n = 0;
  int64_t begin = 0, total = 0;  // the shard's first row and the global vocabulary
};

EmbShape check_shapes(const char* op, const Tensor& table, const Tensor& ids, const Tensor& rows,
                      const VocabRange& range) {
  OPD_CHECK(table.dtype() == DType::F32 && table.is_host() && table.ndim() == 2, op,
            ": the table must be a host f32 [V, D] tensor, got ", table.describe());
  OPD_CHECK(ids.dtype() == DType::I32 && ids.is_host(), op, ": ids must be host i32, got ",
            ids.describe());
  EmbShape s{table.dim(0), table.dim(1), ids.numel(), range.begin,
             range.total == 0 ? table.dim(0) : range.total};
  OPD_CHECK(range.total != 0 ? (range.begin >= 0 && range.begin + s.v <= range.total)
                             : range.begin == 0,
            op, ": shard begin ", range.begin, " of ", s.v, " rows outside ", range.total);
  OPD_CHECK(rows.dtype() == DType::F32 && rows.is_host() && rows.ndim() >= 1 &&
                rows.dim(-1) == s.d && rows.numel() == s.n * s.d,
            op, ": rows ", rows.describe(), " do not match ids ", ids.describe(), " and table ",
            table.describe());
  // Validate every id before touching memory (no throwing inside a parallel body).
  const int32_t* pid = ids.data<int32_t>();
  const int64_t v = s.total;
  int64_t bad = 0;
  Kokkos::parallel_reduce(
      "opd::embedding_check_ids", Policy(0, s.n),
      [=](int64_t i, int64_t& count) { count += (pid[i] < 0 || pid[i] >= v) ? 1 : 0; }, bad);
  if (bad > 0) {
    int64_t first = 0;
    while (pid[first] >= 0 && pid[first] < v) ++first;
    OPD_CHECK(bad == 0, op, ": ", bad, " id(s) outside [0, ", v, "), first ids[", first,
              "] = ", pid[first], " for table ", table.describe());
  }
  return s;
}

}  // namespace

void embedding_forward(const Tensor& table, const Tensor& ids, Tensor& out,
                       const VocabRange& range) {
  const EmbShape s = check_shapes("embedding_forward", table, ids, out, range);
  const float* pt = table.data<float>();
  const int32_t* pid = ids.data<int32_t>();
  float* po = out.data<float>();
  const int64_t d = s.d, v = s.v, begin = s.begin;
  Kokkos::parallel_for("opd::embedding_forward", Policy(0, s.n), [=](int64_t i) {
    const int64_t row = static_cast<int64_t>(pid[i]) - begin;
    float* dst = po + i * d;
    if (row < 0 || row >= v) {
      for (int64_t j = 0; j < d; ++j) dst[j] = 0.0f;
      return;
    }
    const float* src = pt + row * d;
    for (int64_t j = 0; j < d; ++j) dst[j] = src[j];
  });
}

void embedding_backward(const Tensor& d_out, const Tensor& ids, Tensor& d_table,
                        const VocabRange& range) {
  const EmbShape s = check_shapes("embedding_backward", d_table, ids, d_out, range);
  const float* pg = d_out.data<float>();
  const int32_t* pid = ids.data<int32_t>();
  float* pt = d_table.data<float>();
  const int64_t d = s.d, n = s.n, v = s.v, begin = s.begin;
  const int64_t blocks = (d + kColBlock - 1) / kColBlock;
  Kokkos::parallel_for("opd::embedding_backward", Policy(0, blocks), [=](int64_t blk) {
    const int64_t j0 = blk * kColBlock;
    const int64_t w = std::min(kColBlock, d - j0);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t row = static_cast<int64_t>(pid[i]) - begin;
      if (row < 0 || row >= v) continue;
      float* dst = pt + row * d + j0;
      const float* src = pg + i * d + j0;
      for (int64_t j = 0; j < w; ++j) dst[j] += src[j];
    }
  });
}

}  // namespace opd::backend::cpu
