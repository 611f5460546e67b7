#include "parallel/vocab_parallel.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace opd::parallel {

namespace ops = opd::backend;
using core::Tensor;

backend::VocabRange vocab_shard(int64_t vocab, const TensorParallel& tp) {
  if (tp.size() == 1) return {};
  return {tp.shard_begin(vocab), vocab};
}

namespace {

// A tensor's values in host memory for the combine: the O(rows) statistics are combined in
// doubles over the host communicator whatever device computed them. A device tensor is copied
// out, and written back by put_back(); a host one is used in place.
struct HostRows {
  explicit HostRows(Tensor& t) : where(t), host(ops::on_device(t, core::Device::Host)) {}
  void put_back() {
    if (where.defined() && !where.is_host()) ops::copy(host, where);
  }
  Tensor& where;
  Tensor host;
};

}  // namespace

void vocab_parallel_head_stats(const Tensor& h, const Tensor& w_local, const Tensor* targets,
                               float temperature, int64_t chunk, const TensorParallel& tp,
                               ops::HeadStats& out) {
  const int64_t V = w_local.dim(0) * tp.size();
  ops::lm_head_stats(h, w_local, targets, temperature, chunk, out, vocab_shard(V, tp));
  if (tp.size() == 1) return;
  const int64_t N = h.dim(0);
  const bool want_target = out.target_logit.defined(), want_entropy = out.entropy.defined();
  HostRows lse_rows(out.lse), target_rows(out.target_logit), entropy_rows(out.entropy);
  const float* lse = lse_rows.host.data<float>();
  // One collective for the maxima, one for the sums: [exp(lse_r - m), t_r, exp(lse_r - m) e_r]
  // with e_r = lse_r - H_r = E_{p_r}[z] of this shard's renormalised softmax.
  std::vector<double> m(static_cast<std::size_t>(N));
  for (int64_t n = 0; n < N; ++n) m[n] = lse[n];
  {
    // The group's max per row: allreduce-max over doubles, done as a gather of the maxima.
    const std::vector<double> all = tp.group().allgather(m);
    for (int64_t n = 0; n < N; ++n) {
      double mx = -std::numeric_limits<double>::infinity();
      for (int r = 0; r < tp.size(); ++r) mx = std::max(mx, all[r * N + n]);
      m[n] = mx;
    }
  }
  std::vector<double> sums(static_cast<std::size_t>(3 * N), 0.0);
  for (int64_t n = 0; n < N; ++n) {
    const double a = std::exp(static_cast<double>(lse[n]) - m[n]);
    sums[n] = a;
    if (want_target) sums[N + n] = target_rows.host.data<float>()[n];
    if (want_entropy)
      sums[2 * N + n] = a * (static_cast<double>(lse[n]) - entropy_rows.host.data<float>()[n]);
  }
  tp.group().allreduce_sum(sums.data(), 3 * N);
  for (int64_t n = 0; n < N; ++n) {
    const double total_lse = m[n] + std::log(sums[n]);
    lse_rows.host.data<float>()[n] = static_cast<float>(total_lse);
    if (want_target) target_rows.host.data<float>()[n] = static_cast<float>(sums[N + n]);
    if (want_entropy)
      entropy_rows.host.data<float>()[n] = static_cast<float>(total_lse - sums[2 * N + n] / sums[n]);
  }
  for (HostRows* r : {&lse_rows, &target_rows, &entropy_rows}) r->put_back();
}

void vocab_parallel_cross_entropy_backward(const Tensor& h, const Tensor& w_local,
                                           const Tensor& targets, const Tensor& lse,
                                           const Tensor& d_loss, float temperature,
                                           int64_t chunk, const TensorParallel& tp, Tensor& dh,
                                           Tensor& dw_local) {
  const int64_t V = w_local.dim(0) * tp.size();
  ops::lm_head_cross_entropy_backward(h, w_local, targets, lse, d_loss, temperature, chunk, dh,
                                      dw_local, vocab_shard(V, tp));
  tp.allreduce_sum(dh);
}


namespace {

// Every rank's `mine` (the same length everywhere), split back by rank.
std::vector<std::vector<double>> gather_all(const std::vector<double>& mine, const TensorParallel& tp) {
  const std::vector<double> all = tp.group().allgather(mine);
  std::vector<std::vector<double>> out;
  for (int r = 0; r < tp.size(); ++r)
    out.emplace_back(all.begin() + static_cast<std::ptrdiff_t>(r * mine.size()),
                     all.begin() + static_cast<std::ptrdiff_t>((r + 1) * mine.size()));
  return out;
}

void pack(std::vector<double>& buf, const backend::ShardPartials& p) {
  for (const auto* v : {&p.max, &p.sum_exp, &p.sum_exp_dz, &p.sum_exp_tail, &p.z_at})
    buf.insert(buf.end(), v->begin(), v->end());
}

backend::ShardPartials unpack(const double*& at, std::size_t n, std::size_t nk) {
  backend::ShardPartials p;
  for (auto* v : {&p.max, &p.sum_exp, &p.sum_exp_dz, &p.sum_exp_tail}) {
    v->assign(at, at + n);
    at += n;
  }
  p.z_at.assign(at, at + nk);
  at += nk;
  return p;
}

}  // namespace

void vocab_parallel_gather(const Tensor& x_local, const backend::VocabRange& range,
                           const Tensor& ids, const TensorParallel& tp, Tensor& out) {
  const std::vector<double> mine = ops::shard_values(x_local, range, ids);
  std::vector<double> total(mine.size(), 0.0);
  for (const auto& part : gather_all(mine, tp))  // rank order: the same on every rank
    for (std::size_t i = 0; i < total.size(); ++i) total[i] += part[i];
  HostRows out_rows(out);
  float* o = out_rows.host.data<float>();
  for (std::size_t i = 0; i < total.size(); ++i) o[i] = static_cast<float>(total[i]);
  out_rows.put_back();
}

void vocab_parallel_topk(const Tensor& x_local, const backend::VocabRange& range, int64_t k,
                         const TensorParallel& tp, Tensor& values, Tensor& ids) {
  const int64_t n = x_local.dim(0);
  std::vector<int32_t> cand;
  std::vector<double> vals;
  ops::shard_topk(x_local, range, k, cand, vals);
  std::vector<double> mine(vals);
  mine.insert(mine.end(), cand.begin(), cand.end());
  std::vector<std::vector<int32_t>> all_ids;
  std::vector<std::vector<double>> all_vals;
  const std::size_t nk = static_cast<std::size_t>(n * k);
  for (const auto& part : gather_all(mine, tp)) {
    all_vals.emplace_back(part.begin(), part.begin() + static_cast<std::ptrdiff_t>(nk));
    all_ids.emplace_back(part.begin() + static_cast<std::ptrdiff_t>(nk), part.end());
  }
  const std::vector<int32_t> top = ops::merge_topk(all_ids, all_vals, n, k);
  HostRows id_rows(ids), value_rows(values);
  std::copy(top.begin(), top.end(), id_rows.host.data<int32_t>());
  for (int64_t r = 0; r < n; ++r)  // each winner's value, from the shard that proposed it
    for (int64_t i = 0; i < k; ++i) {
      const int32_t id = top[static_cast<std::size_t>(r * k + i)];
      double v = std::numeric_limits<double>::quiet_NaN();
      for (std::size_t s = 0; s < all_ids.size() && std::isnan(v); ++s)
        for (int64_t c = 0; c < k; ++c)
          if (all_ids[s][static_cast<std::size_t>(r * k + c)] == id) {
            v = all_vals[s][static_cast<std::size_t>(r * k + c)];
            break;
          }
      value_rows.host.data<float>()[r * k + i] = static_cast<float>(v);
    }
  id_rows.put_back();
  value_rows.put_back();
}

backend::ShardRows vocab_parallel_rows(const Tensor& z_local, const backend::VocabRange& range,
                                       const Tensor& ids, const Tensor* tail_ids,
                                       int64_t student_k, int64_t teacher_k,
                                       const TensorParallel& tp, const Tensor* u_local,
                                       int64_t top_k, double beta) {
  const int64_t n = z_local.dim(0);
  const std::size_t nn = static_cast<std::size_t>(n), nk = static_cast<std::size_t>(ids.numel());
  const bool full = u_local != nullptr;
  // First exchange: both sides' partials and (Full) each shard's top-k candidates.
  backend::ShardPartials pz, pu;
  ops::shard_partials(z_local, range, ids, tail_ids, pz);
  std::vector<double> mine;
  pack(mine, pz);
  std::vector<int32_t> cz, cu;
  std::vector<double> vz, vu;
  if (full) {
    ops::shard_partials(*u_local, range, ids, nullptr, pu);
    pack(mine, pu);
    if (top_k > 0) {
      ops::shard_topk(z_local, range, top_k, cz, vz);
      ops::shard_topk(*u_local, range, top_k, cu, vu);
      for (const auto* c : {&cz, &cu}) mine.insert(mine.end(), c->begin(), c->end());
      for (const auto* v : {&vz, &vu}) mine.insert(mine.end(), v->begin(), v->end());
    }
  }
  const auto all = gather_all(mine, tp);
  std::vector<backend::ShardPartials> sz, su;
  std::vector<std::vector<int32_t>> iz, iu;
  std::vector<std::vector<double>> wz, wu;
  const std::size_t nt = static_cast<std::size_t>(n * top_k);
  for (const auto& buf : all) {
    const double* at = buf.data();
    sz.push_back(unpack(at, nn, nk));
    if (!full) continue;
    su.push_back(unpack(at, nn, nk));
    if (top_k == 0) continue;
    iz.emplace_back(at, at + nt);
    at += nt;
    iu.emplace_back(at, at + nt);
    at += nt;
    wz.emplace_back(at, at + nt);
    at += nt;
    wu.emplace_back(at, at + nt);
  }
  backend::ShardRows rows = ops::combine_shards(sz, range, ids, student_k, teacher_k);
  if (!full) return rows;
  const backend::ShardRows rows_u = ops::combine_shards(su, range, ids, student_k, teacher_k);

  // Second exchange: the sums that need both whole log-normalisers, and both logits at the
  // merged top-k lists' ids.
  const std::vector<int32_t> top_p = top_k > 0 ? ops::merge_topk(iz, wz, n, top_k) : std::vector<int32_t>();
  const std::vector<int32_t> top_q = top_k > 0 ? ops::merge_topk(iu, wu, n, top_k) : std::vector<int32_t>();
  const int64_t K = ids.dim(1), K2 = K + 2 * top_k;
  std::vector<int32_t> extra(static_cast<std::size_t>(n * 2 * top_k));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < top_k; ++i) {
      extra[static_cast<std::size_t>(r * 2 * top_k + i)] = top_p[static_cast<std::size_t>(r * top_k + i)];
      extra[static_cast<std::size_t>(r * 2 * top_k + top_k + i)] = top_q[static_cast<std::size_t>(r * top_k + i)];
    }
  const Tensor extra_ids = Tensor::from_vector(extra, {n, 2 * top_k});
  backend::ShardSums sums;
  ops::shard_full_sums(z_local, *u_local, rows.lse, rows_u.lse, beta, sums);
  std::vector<double> second;
  if (top_k > 0) {
    const std::vector<double> zv = ops::shard_values(z_local, range, extra_ids);
    const std::vector<double> uv = ops::shard_values(*u_local, range, extra_ids);
    second.insert(second.end(), zv.begin(), zv.end());
    second.insert(second.end(), uv.begin(), uv.end());
  }
  for (const auto* v : {&sums.kl_pq, &sums.kl_qp, &sums.jsd, &sums.jsd_pg})
    second.insert(second.end(), v->begin(), v->end());
  std::vector<double> total(second.size(), 0.0);
  for (const auto& buf : gather_all(second, tp))  // in rank order: the same sums everywhere
    for (std::size_t i = 0; i < total.size(); ++i) total[i] += buf[i];

  // Assemble: ids [y | S | T | top p | top q] with both logits at each.
  std::vector<int32_t> all_ids(static_cast<std::size_t>(n * K2));
  std::vector<double> z_at(all_ids.size()), u_at(all_ids.size());
  const Tensor ids_host = ops::on_device(ids, core::Device::Host);
  const int32_t* ip = ids_host.data<int32_t>();
  const std::size_t e = static_cast<std::size_t>(n * 2 * top_k);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < K; ++c) {
      const auto to = static_cast<std::size_t>(r * K2 + c), from = static_cast<std::size_t>(r * K + c);
      all_ids[to] = ip[from];
      z_at[to] = rows.z_at[from];
      u_at[to] = rows_u.z_at[from];
    }
    for (int64_t c = 0; c < 2 * top_k; ++c) {
      const auto to = static_cast<std::size_t>(r * K2 + K + c), from = static_cast<std::size_t>(r * 2 * top_k + c);
      all_ids[to] = extra[from];
      z_at[to] = total[from];
      u_at[to] = total[e + from];
    }
  }
  rows.ids = Tensor::from_vector(all_ids, {n, K2});
  rows.z_at = std::move(z_at);
  rows.u_at = std::move(u_at);
  rows.full = true;
  rows.top_k = top_k;
  rows.lse_u = rows_u.lse;
  rows.entropy_u = rows_u.entropy;
  rows.beta = beta;
  const std::size_t base = top_k > 0 ? 2 * e : 0;
  for (auto [v, k] : {std::pair{&rows.kl_pq, 0}, std::pair{&rows.kl_qp, 1}, std::pair{&rows.jsd, 2},
                      std::pair{&rows.jsd_pg, 3}})
    v->assign(total.begin() + static_cast<std::ptrdiff_t>(base + k * nn),
              total.begin() + static_cast<std::ptrdiff_t>(base + (k + 1) * nn));
  return rows;
}

}  // namespace opd::parallel
