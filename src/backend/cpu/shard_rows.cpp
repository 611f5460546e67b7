// CPU shard_partials and combine_shards (backend/ops.hpp): the per-row quantities of a
// vocabulary-sharded block of logits. Each shard sums relative to its own row maximum m_r
// (s_r = sum e, t_r = sum e (z - m_r), e = exp(z - m_r)); with M the largest m_r:
//   lse       = M + log sum_r exp(m_r - M) s_r
//   H(p)      = (lse - M) - sum_r exp(m_r - lse) (t_r + (m_r - M) s_r)
//   p(tail)   = sum_r exp(m_r - lse) tail_r
// so large logits never overflow and the entropy is formed without a difference of large terms.
#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/cpu/cpu_ops.hpp"
#include "backend/cpu/kernel_support.hpp"
#include "core/error.hpp"

namespace opd::backend::cpu {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kNegInf = -std::numeric_limits<double>::infinity();
}  // namespace

void shard_partials(const Tensor& z, const VocabRange& range, const Tensor& ids,
                    const Tensor* tail_ids, ShardPartials& out) {
  const char* op = "shard_partials";
  require_f32(op, "z", z);
  OPD_CHECK(z.ndim() == 2, op, ": z must be [n, V_local], got ", z.describe());
  const int64_t n = z.dim(0), V = z.dim(1), begin = range.begin;
  OPD_CHECK(range.total > 0 && begin >= 0 && begin + V <= range.total, op, ": shard [", begin,
            ", ", begin + V, ") of a vocabulary of ", range.total);
  OPD_CHECK(ids.is_host() && ids.dtype() == core::DType::I32 && ids.ndim() == 2 && ids.dim(0) == n,
            op, ": ids must be host i32 [", n, ", K], got ", ids.describe());
  const int64_t K = ids.dim(1);
  int64_t kt = 0;
  const int32_t* tp = nullptr;
  if (tail_ids) {
    OPD_CHECK(tail_ids->is_host() && tail_ids->dtype() == core::DType::I32 &&
                  tail_ids->ndim() == 2 && tail_ids->dim(0) == n,
              op, ": tail_ids must be host i32 [", n, ", k], got ", tail_ids->describe());
    kt = tail_ids->dim(1);
    tp = tail_ids->data<int32_t>();
  }
  for (auto* v : {&out.max, &out.sum_exp, &out.sum_exp_dz, &out.sum_exp_tail})
    v->assign(static_cast<std::size_t>(n), 0.0);
  out.z_at.assign(static_cast<std::size_t>(n * K), 0.0);
  std::vector<int32_t> scratch(static_cast<std::size_t>(n * kt));  // each row's local tail ids
  const float* zp = z.data<float>();
  const int32_t* ip = ids.data<int32_t>();
  double *mx = out.max.data(), *s = out.sum_exp.data(), *t = out.sum_exp_dz.data(),
         *tail = out.sum_exp_tail.data(), *za = out.z_at.data();
  int32_t* sc = scratch.data();
  Kokkos::parallel_for("opd::cpu::shard_partials", Policy(0, n), [=](int64_t r) {
    const float* zr = zp + r * V;
    for (int64_t c = 0; c < K; ++c) {
      const int64_t j = static_cast<int64_t>(ip[r * K + c]) - begin;
      za[r * K + c] = (j >= 0 && j < V) ? static_cast<double>(zr[j]) : 0.0;
    }
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < V; ++j) m = std::max(m, zr[j]);
    mx[r] = m;
    if (!std::isfinite(m)) return;  // no mass here (or no finite maximum): sums stay 0
    // This shard's members of tail_ids, sorted, to walk the complement alongside j (no
    // 1 - p(T) cancellation).
    int32_t* mine = sc + r * kt;
    int64_t nm = 0;
    for (int64_t i = 0; i < kt; ++i) {
      const int64_t j = static_cast<int64_t>(tp[r * kt + i]) - begin;
      if (j >= 0 && j < V) mine[nm++] = static_cast<int32_t>(j);
    }
    std::sort(mine, mine + nm);
    const double md = m;
    double se = 0.0, st = 0.0, stail = 0.0;
    for (int64_t j = 0, k = 0; j < V; ++j) {
      const double d = static_cast<double>(zr[j]) - md;
      const double e = std::exp(d);
      se += e;
      if (e > 0.0) st += e * d;
      if (k < nm && mine[k] == j) ++k;
      else stail += e;
    }
    s[r] = se;
    t[r] = st;
    tail[r] = stail;
  });
}

ShardRows combine_shards(const std::vector<ShardPartials>& shards, const VocabRange& range,
                         const Tensor& ids, int64_t student_k, int64_t teacher_k) {
  OPD_CHECK(!shards.empty(), "combine_shards: no shards");
  const int64_t n = ids.dim(0), K = ids.dim(1);
  OPD_CHECK(1 + student_k + teacher_k <= K, "combine_shards: ", K, " ids for y, ", student_k,
            " student and ", teacher_k, " teacher ids");
  for (const auto& p : shards)
    OPD_CHECK(static_cast<int64_t>(p.max.size()) == n &&
                  static_cast<int64_t>(p.z_at.size()) == n * K,
              "combine_shards: a shard's partials do not match ", n, " rows of ", K, " ids");
  ShardRows out;
  out.range = range;
  out.ids = ids;
  out.student_k = student_k;
  out.teacher_k = teacher_k;
  out.lse.assign(static_cast<std::size_t>(n), kNaN);
  out.entropy.assign(static_cast<std::size_t>(n), kNaN);
  out.p_tail.assign(static_cast<std::size_t>(n), 0.0);
  out.z_at.assign(static_cast<std::size_t>(n * K), 0.0);
  for (const auto& p : shards)  // each id lives in exactly one shard
    for (int64_t i = 0; i < n * K; ++i) out.z_at[static_cast<std::size_t>(i)] += p.z_at[static_cast<std::size_t>(i)];
  for (int64_t r = 0; r < n; ++r) {
    const auto ri = static_cast<std::size_t>(r);
    double M = kNegInf;
    for (const auto& p : shards)
      if (p.sum_exp[ri] > 0.0) M = std::max(M, p.max[ri]);
    if (!std::isfinite(M)) continue;  // no distribution: NaN
    double S = 0.0;
    for (const auto& p : shards)
      if (p.sum_exp[ri] > 0.0) S += std::exp(p.max[ri] - M) * p.sum_exp[ri];
    const double lse = M + std::log(S);
    double pz = 0.0, tail = 0.0;  // sum p (z - M), p(tail)
    for (const auto& p : shards) {
      if (!(p.sum_exp[ri] > 0.0)) continue;
      const double a = std::exp(p.max[ri] - lse);
      pz += a * (p.sum_exp_dz[ri] + (p.max[ri] - M) * p.sum_exp[ri]);
      tail += a * p.sum_exp_tail[ri];
    }
    out.lse[ri] = lse;
    out.entropy[ri] = (lse - M) - pz;
    out.p_tail[ri] = tail;
  }
  return out;
}

namespace {
// Top-k order: the larger value first, ties to the lower id; NaN ranks last (as -inf).
bool before(double va, int32_t a, double vb, int32_t b) {
  const double ka = va != va ? kNegInf : va, kb = vb != vb ? kNegInf : vb;
  return ka > kb || (ka == kb && a < b);
}
}  // namespace

void shard_topk(const Tensor& x, const VocabRange& range, int64_t k, std::vector<int32_t>& ids,
                std::vector<double>& values) {
  require_f32("shard_topk", "x", x);
  const int64_t n = x.dim(0), V = x.dim(1), begin = range.begin;
  ids.assign(static_cast<std::size_t>(n * k), -1);
  values.assign(static_cast<std::size_t>(n * k), kNegInf);
  const float* xp = x.data<float>();
  int32_t* ip = ids.data();
  double* vp = values.data();
  const int64_t m = std::min(k, V);
  Kokkos::parallel_for("opd::cpu::shard_topk", Policy(0, n), [=](int64_t r) {
    const float* xr = xp + r * V;
    int32_t* out = ip + r * k;  // local columns while selecting, global ids at the end
    auto cmp = [&](int32_t a, int32_t b) { return before(xr[a], a, xr[b], b); };
    for (int64_t j = 0; j < m; ++j) out[j] = static_cast<int32_t>(j);
    std::make_heap(out, out + m, cmp);
    for (int64_t j = m; j < V; ++j)
      if (cmp(static_cast<int32_t>(j), out[0])) {
        std::pop_heap(out, out + m, cmp);
        out[m - 1] = static_cast<int32_t>(j);
        std::push_heap(out, out + m, cmp);
      }
    std::sort_heap(out, out + m, cmp);
    for (int64_t i = 0; i < m; ++i) {
      vp[r * k + i] = xr[out[i]];
      out[i] = static_cast<int32_t>(out[i] + begin);
    }
  });
}

std::vector<int32_t> merge_topk(const std::vector<std::vector<int32_t>>& ids,
                                const std::vector<std::vector<double>>& values, int64_t n,
                                int64_t k) {
  std::vector<int32_t> out(static_cast<std::size_t>(n * k), -1);
  std::vector<std::pair<double, int32_t>> all;
  for (int64_t r = 0; r < n; ++r) {
    all.clear();
    for (std::size_t s = 0; s < ids.size(); ++s)
      for (int64_t i = 0; i < k; ++i) {
        const int32_t id = ids[s][static_cast<std::size_t>(r * k + i)];
        if (id >= 0) all.emplace_back(values[s][static_cast<std::size_t>(r * k + i)], id);
      }
    std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
      return before(a.first, a.second, b.first, b.second);
    });
    for (int64_t i = 0; i < std::min<int64_t>(k, static_cast<int64_t>(all.size())); ++i)
      out[static_cast<std::size_t>(r * k + i)] = all[static_cast<std::size_t>(i)].second;
  }
  return out;
}

void shard_full_sums(const Tensor& z, const Tensor& u, const std::vector<double>& lse,
                     const std::vector<double>& lse_u, double beta, ShardSums& out) {
  require_f32("shard_full_sums", "z", z);
  require_f32("shard_full_sums", "u", u);
  OPD_CHECK(z.shape() == u.shape() && z.ndim() == 2, "shard_full_sums: z ", z.describe(), " u ",
            u.describe());
  const int64_t n = z.dim(0), V = z.dim(1);
  for (auto* v : {&out.kl_pq, &out.kl_qp, &out.jsd, &out.jsd_pg}) v->assign(static_cast<std::size_t>(n), 0.0);
  const float* zp = z.data<float>();
  const float* up = u.data<float>();
  const double *lp0 = lse.data(), *lq0 = lse_u.data();
  double *a = out.kl_pq.data(), *b = out.kl_qp.data(), *d = out.jsd.data(), *g = out.jsd_pg.data();
  const bool with_jsd = beta > 0.0 && beta < 1.0;
  const double lb = with_jsd ? std::log(beta) : 0.0, l1b = with_jsd ? std::log1p(-beta) : 0.0;
  Kokkos::parallel_for("opd::cpu::shard_full_sums", Policy(0, n), [=](int64_t r) {
    double kl_pq = 0.0, kl_qp = 0.0, jd = 0.0, jg = 0.0;
    for (int64_t j = 0; j < V; ++j) {
      const double lp = static_cast<double>(zp[r * V + j]) - lp0[r];
      const double lq = static_cast<double>(up[r * V + j]) - lq0[r];
      const double p = std::exp(lp), q = std::exp(lq);
      if (p > 0.0) kl_pq += p * (lp - lq);
      if (q > 0.0) kl_qp += q * (lq - lp);
      if (with_jsd) {
        const double mx = std::max(lb + lq, l1b + lp);
        const double lm = mx == kNegInf ? kNegInf
                                        : mx + std::log(std::exp(lb + lq - mx) + std::exp(l1b + lp - mx));
        if (q > 0.0) jd += beta * q * (lq - lm);
        if (p > 0.0) {
          jd += (1.0 - beta) * p * (lp - lm);
          jg += p * (lp - lm);
        }
      }
    }
    a[r] = kl_pq;
    b[r] = kl_qp;
    d[r] = jd;
    g[r] = jg * (1.0 - beta);
  });
}

std::vector<double> shard_values(const Tensor& x, const VocabRange& range, const Tensor& ids) {
  require_f32("shard_values", "x", x);
  const int64_t n = x.dim(0), V = x.dim(1), K = ids.dim(1);
  std::vector<double> out(static_cast<std::size_t>(n * K), 0.0);
  const float* xp = x.data<float>();
  const int32_t* ip = ids.data<int32_t>();
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < K; ++c) {
      const int64_t j = static_cast<int64_t>(ip[r * K + c]) - range.begin;
      if (j >= 0 && j < V) out[static_cast<std::size_t>(r * K + c)] = xp[r * V + j];
    }
  return out;
}

}  // namespace opd::backend::cpu
