// The vocabulary-shard ops for the CUDA backend (backend/ops.hpp: shard_partials, shard_topk,
// shard_full_sums, shard_values), one block per row: the rows' code (device, or the host
// emulation test) and the checks and parameter blocks. Each op reads this shard's [n, V_local]
// columns where they live and hands back only its O(rows x K) results, written into scratch and
// fetched to the host vectors the contract names. The sums are the CPU backend's
// (backend/cpu/shard_rows.cpp), in double.
#pragma once

#include <algorithm>

#include "backend/cuda/row_select.hpp"
#include "backend/cuda/staging.hpp"
#include "backend/ops.hpp"

namespace opd::backend::cuda::rows {

// ---- shard_partials: out = [max | sum e | sum e (z - m) | sum e off the tail ids] ([n] each),
// then z at the ids [n, K] (0 where another shard holds them).
struct PartialsParams {
  const float* z = nullptr;
  int64_t n = 0, V = 0, begin = 0, K = 0, kt = 0;
  const int32_t* ids = nullptr;
  const int32_t* tail = nullptr;  // [n, kt] or null
  int32_t* mine = nullptr;        // scratch [n, kt]: this shard's tail columns, sorted
  double* out = nullptr;
};

template <class Blk>
OPD_ROW void partials_row(Blk& b, const PartialsParams& P, int64_t r) {
  const int64_t n = P.n, V = P.V, K = P.K;
  const float* zr = P.z + r * V;
  double* za = P.out + 4 * n + r * K;
  for (int64_t c = b.tid(); c < K; c += b.size()) {
    const int64_t j = int64_t(P.ids[r * K + c]) - P.begin;
    za[c] = (j >= 0 && j < V) ? double(zr[j]) : 0.0;
  }
  const double m = row_max(b, zr, V);
  int64_t* nm_slot = b.template shared<int64_t>();
  if (b.tid() == 0) {
    P.out[r] = m;
    P.out[n + r] = P.out[2 * n + r] = P.out[3 * n + r] = 0.0;
    // This shard's members of the tail ids, sorted, to sum the complement directly (no
    // 1 - p(T) cancellation).
    int32_t* mine = P.mine + r * P.kt;
    int64_t nm = 0;
    for (int64_t i = 0; i < P.kt; ++i) {
      const int64_t j = int64_t(P.tail[r * P.kt + i]) - P.begin;
      if (j < 0 || j >= V) continue;
      int64_t at = nm++;
      while (at > 0 && mine[at - 1] > j) {
        mine[at] = mine[at - 1];
        --at;
      }
      mine[at] = int32_t(j);
    }
    *nm_slot = nm;
  }
  b.sync();
  const int64_t nm = *nm_slot;
  if (!is_finite(m)) return;  // no mass here (or no finite maximum): the sums stay 0
  const int32_t* mine = P.mine + r * P.kt;
  double se = 0.0, st = 0.0, stail = 0.0;
  for (int64_t j = b.tid(); j < V; j += b.size()) {
    const double d = double(zr[j]) - m;
    const double e = exp(d);
    se += e;
    if (e > 0.0) st += e * d;
    if (!sorted_contains(mine, nm, j)) stail += e;
  }
  se = b.sum(se);
  st = b.sum(st);
  stail = b.sum(stail);
  if (b.tid() == 0) {
    P.out[n + r] = se;
    P.out[2 * n + r] = st;
    P.out[3 * n + r] = stail;
  }
}

inline PartialsParams prepare_partials(Staging& st, const Tensor& z, const VocabRange& range,
                                       const Tensor& ids, const Tensor* tail_ids) {
  const char* op = "shard_partials";
  OPD_CHECK(z.defined() && z.dtype() == core::DType::F32 && z.device() == st.device() &&
                z.ndim() == 2,
            op, ": z must be f32 [n, V_local] on ", core::device_name(st.device()), ", got ",
            z.describe());
  PartialsParams P;
  P.n = z.dim(0);
  P.V = z.dim(1);
  P.begin = range.begin;
  OPD_CHECK(range.total > 0 && P.begin >= 0 && P.begin + P.V <= range.total, op, ": shard [",
            P.begin, ", ", P.begin + P.V, ") of a vocabulary of ", range.total);
  OPD_CHECK(ids.defined() && ids.dtype() == core::DType::I32 && ids.ndim() == 2 &&
                ids.dim(0) == P.n,
            op, ": ids must be i32 [", P.n, ", K], got ", ids.describe());
  P.K = ids.dim(1);
  if (tail_ids) {
    OPD_CHECK(tail_ids->defined() && tail_ids->dtype() == core::DType::I32 &&
                  tail_ids->ndim() == 2 && tail_ids->dim(0) == P.n,
              op, ": tail_ids must be i32 [", P.n, ", k], got ", tail_ids->describe());
    P.kt = tail_ids->dim(1);
    P.tail = st.in<int32_t>(*tail_ids);
  }
  P.z = z.data<float>();
  P.ids = st.in<int32_t>(ids);
  P.mine = st.scratch<int32_t>(P.n * P.kt);
  P.out = st.scratch<double>(P.n * (4 + P.K));
  return P;
}

inline void fetch_partials(Staging& st, const PartialsParams& P, ShardPartials& out) {
  const std::size_t n = static_cast<std::size_t>(P.n);
  double* parts[4] = {P.out, P.out + P.n, P.out + 2 * P.n, P.out + 3 * P.n};
  std::vector<double>* dst[4] = {&out.max, &out.sum_exp, &out.sum_exp_dz, &out.sum_exp_tail};
  for (int i = 0; i < 4; ++i) {
    dst[i]->assign(n, 0.0);
    st.fetch(*dst[i], static_cast<const double*>(parts[i]));
  }
  out.z_at.assign(static_cast<std::size_t>(P.n * P.K), 0.0);
  st.fetch(out.z_at, static_cast<const double*>(P.out + 4 * P.n));
}

// ---- shard_topk: each row's best m = min(k, V_local) as global ids in top-k order, padded with
// id -1 and value -inf.
struct TopkParams {
  const float* x = nullptr;
  int64_t V = 0, begin = 0, k = 0;
  int32_t* cand = nullptr;  // scratch [n, k]
  int32_t* ids = nullptr;   // [n, k]
  double* values = nullptr;
};

template <class Blk>
OPD_ROW void topk_row(Blk& b, const TopkParams& P, int64_t r) {
  const float* xr = P.x + r * P.V;
  const int64_t k = P.k, m = imin(k, P.V);
  int32_t* cand = P.cand + r * k;
  int32_t* ids = P.ids + r * k;
  if (m > 0) {
    select_topk(b, xr, P.V, m, cand);
    sort_ids(b, xr, cand, m, ids);
  }
  for (int64_t i = b.tid(); i < k; i += b.size()) {
    if (i < m) {
      P.values[r * k + i] = double(xr[ids[i]]);
      ids[i] = int32_t(ids[i] + P.begin);
    } else {
      ids[i] = -1;
      P.values[r * k + i] = -kInf;
    }
  }
}

inline TopkParams prepare_topk(Staging& st, const Tensor& x, const VocabRange& range, int64_t k) {
  OPD_CHECK(x.defined() && x.dtype() == core::DType::F32 && x.device() == st.device() &&
                x.ndim() == 2,
            "shard_topk: x must be f32 [n, V_local] on ", core::device_name(st.device()), ", got ",
            x.describe());
  OPD_CHECK(k >= 0, "shard_topk: k = ", k);
  OPD_CHECK(x.dim(1) < (int64_t(1) << 31), "shard_topk: ", x.dim(1), " columns");
  TopkParams P;
  P.x = x.data<float>();
  P.V = x.dim(1);
  P.begin = range.begin;
  P.k = k;
  P.cand = st.scratch<int32_t>(x.dim(0) * k);
  P.ids = st.scratch<int32_t>(x.dim(0) * k);
  P.values = st.scratch<double>(x.dim(0) * k);
  return P;
}

// ---- shard_full_sums: this shard's shares of KL(p || q), KL(q || p), the JSD at beta and
// sum p g, given the whole rows' log-normalisers; out = four [n] blocks.
struct FullSumsParams {
  const float *z = nullptr, *u = nullptr;
  int64_t n = 0, V = 0;
  const double *lse = nullptr, *lse_u = nullptr;
  double beta = 0.5;
  double* out = nullptr;
};

template <class Blk>
OPD_ROW void full_sums_row(Blk& b, const FullSumsParams& P, int64_t r) {
  const float* zr = P.z + r * P.V;
  const float* ur = P.u + r * P.V;
  const double beta = P.beta;
  const bool with_jsd = beta > 0.0 && beta < 1.0;
  const double lb = with_jsd ? log(beta) : 0.0, l1b = with_jsd ? log1p(-beta) : 0.0;
  const double lp0 = P.lse[r], lq0 = P.lse_u[r];
  double kl_pq = 0.0, kl_qp = 0.0, jd = 0.0, jg = 0.0;
  for (int64_t j = b.tid(); j < P.V; j += b.size()) {
    const double lp = double(zr[j]) - lp0, lq = double(ur[j]) - lq0;
    const double p = exp(lp), q = exp(lq);
    if (p > 0.0) kl_pq += p * (lp - lq);
    if (q > 0.0) kl_qp += q * (lq - lp);
    if (with_jsd) {
      const double mx = dmax(lb + lq, l1b + lp);
      const double lm = mx == -kInf ? -kInf : mx + log(exp(lb + lq - mx) + exp(l1b + lp - mx));
      if (q > 0.0) jd += beta * q * (lq - lm);
      if (p > 0.0) {
        jd += (1.0 - beta) * p * (lp - lm);
        jg += p * (lp - lm);
      }
    }
  }
  kl_pq = b.sum(kl_pq);
  kl_qp = b.sum(kl_qp);
  jd = b.sum(jd);
  jg = b.sum(jg);
  if (b.tid() == 0) {
    P.out[r] = kl_pq;
    P.out[P.n + r] = kl_qp;
    P.out[2 * P.n + r] = jd;
    P.out[3 * P.n + r] = jg * (1.0 - beta);
  }
}

inline FullSumsParams prepare_full_sums(Staging& st, const Tensor& z, const Tensor& u,
                                        const std::vector<double>& lse,
                                        const std::vector<double>& lse_u, double beta) {
  const core::Device dev = st.device();
  OPD_CHECK(z.defined() && u.defined() && z.dtype() == core::DType::F32 &&
                u.dtype() == core::DType::F32 && z.device() == dev && u.device() == dev &&
                z.shape() == u.shape() && z.ndim() == 2,
            "shard_full_sums: z ", z.describe(), " u ", u.describe(), " (f32 [n, V_local] on ",
            core::device_name(dev), ")");
  FullSumsParams P;
  P.n = z.dim(0);
  P.V = z.dim(1);
  OPD_CHECK(static_cast<int64_t>(lse.size()) == P.n && static_cast<int64_t>(lse_u.size()) == P.n,
            "shard_full_sums: ", lse.size(), " and ", lse_u.size(), " log-normalisers for ", P.n,
            " rows");
  P.z = z.data<float>();
  P.u = u.data<float>();
  P.lse = st.in(lse);
  P.lse_u = st.in(lse_u);
  P.beta = beta;
  P.out = st.scratch<double>(4 * P.n);
  return P;
}

// ---- shard_values: x at the ids [n, K] where this shard holds them, 0 elsewhere (element-wise).
OPD_ROW double shard_value(const float* x, int64_t V, int64_t begin, const int32_t* ids, int64_t K,
                           int64_t i) {
  const int64_t r = i / K, j = int64_t(ids[i]) - begin;
  return (j >= 0 && j < V) ? double(x[r * V + j]) : 0.0;
}

}  // namespace opd::backend::cuda::rows
