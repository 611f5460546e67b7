// Dispatch on device (DESIGN.md §2) for the distillation ops: column gathers, per-token
// student/teacher statistics and objective gradients.
#include "backend/cpu/cpu_ops.hpp"
#include "backend/device_check.hpp"
#ifdef OPD_WITH_CUDA
#include "backend/cuda/cuda_distill_ops.hpp"
#include "backend/cuda/cuda_ops.hpp"
#endif
#include "backend/ops.hpp"

namespace opd::backend {

namespace {
// Per-row outputs of a GPU op may live on the host (the distillation loop keeps its per-row
// arrays there): the kernel writes a device twin of each such tensor, and finish() copies the
// twins back (O(rows) each, never a [rows, V] block).
class RowOutputs {
 public:
  explicit RowOutputs(core::Device device) : device_(device) {}
  // t itself when it lives on the device (or is undefined), else a device twin of it.
  Tensor twin(Tensor& t) {
    if (!t.defined() || t.device() == device_) return t;
    Tensor d = Tensor::empty(t.shape(), t.dtype(), device_);
    pending_.emplace_back(&t, d);
    return d;
  }
  void finish() {
    for (auto& [host, dev] : pending_) copy(dev, *host);
  }

 private:
  core::Device device_;
  std::vector<std::pair<Tensor*, Tensor>> pending_;
};
}  // namespace

void gather_cols(const Tensor& x, const Tensor& ids, Tensor& out) {
  OPD_ON_CUDA("gather_cols", x, gather_cols(x, ids, out));
  cpu::gather_cols(x, ids, out);
}

void token_stats(const Tensor& z, const TeacherRows& teacher, const Tensor& y, int diag_k,
                 TokenStats& out, const ShardRows* shard) {
  if (!z.is_host()) {
    RowOutputs rows(z.device());
    TokenStats twins;
    for (auto [from, to] : {std::pair{&out.logp_y, &twins.logp_y}, {&out.entropy_p, &twins.entropy_p},
                            {&out.logq_y, &twins.logq_y}, {&out.entropy_q, &twins.entropy_q},
                            {&out.kl_full, &twins.kl_full}, {&out.kl_topk, &twins.kl_topk},
                            {&out.overlap_ratio, &twins.overlap_ratio},
                            {&out.overlap_mass_p, &twins.overlap_mass_p},
                            {&out.overlap_mass_q, &twins.overlap_mass_q},
                            {&out.overlap_adv, &twins.overlap_adv}})
      *to = rows.twin(*from);
    OPD_ON_CUDA_CALL("token_stats", token_stats(z, teacher, y, diag_k, twins, shard));
    rows.finish();
    return;
  }
  cpu::token_stats(z, teacher, y, diag_k, out, shard);
}

void objective_rows(const Tensor& z, const TeacherRows& teacher, const Tensor& y,
                    const Tensor& logmu, const Tensor& adv, const Tensor& baseline,
                    const Tensor& w, const ObjectiveArgs& args, Tensor& loss, Tensor& dz,
                    const ShardRows* shard) {
  if (!z.is_host()) {
    RowOutputs rows(z.device());
    Tensor loss_twin = rows.twin(loss);
    OPD_ON_CUDA_CALL("objective_rows",
                     objective_rows(z, teacher, y, logmu, adv, baseline, w, args, loss_twin, dz, shard));
    rows.finish();
    return;
  }
  cpu::objective_rows(z, teacher, y, logmu, adv, baseline, w, args, loss, dz, shard);
}

void shard_partials(const Tensor& z_local, const VocabRange& range, const Tensor& ids,
                    const Tensor* tail_ids, ShardPartials& out) {
  OPD_ON_CUDA_STAGED("shard_partials", z_local, shard_partials(z_local, range, ids, tail_ids, out));
  cpu::shard_partials(z_local, range, ids, tail_ids, out);
}

ShardRows combine_shards(const std::vector<ShardPartials>& shards, const VocabRange& range,
                         const Tensor& ids, int64_t student_k, int64_t teacher_k) {
  return cpu::combine_shards(shards, range, ids, student_k, teacher_k);
}

void shard_topk(const Tensor& x_local, const VocabRange& range, int64_t k,
                std::vector<int32_t>& ids, std::vector<double>& values) {
  OPD_ON_CUDA_STAGED("shard_topk", x_local, shard_topk(x_local, range, k, ids, values));
  cpu::shard_topk(x_local, range, k, ids, values);
}

std::vector<int32_t> merge_topk(const std::vector<std::vector<int32_t>>& ids,
                                const std::vector<std::vector<double>>& values, int64_t n,
                                int64_t k) {
  return cpu::merge_topk(ids, values, n, k);
}

void shard_full_sums(const Tensor& z_local, const Tensor& u_local, const std::vector<double>& lse,
                     const std::vector<double>& lse_u, double beta, ShardSums& out) {
  OPD_ON_CUDA_STAGED("shard_full_sums", z_local, shard_full_sums(z_local, u_local, lse, lse_u, beta, out));
  cpu::shard_full_sums(z_local, u_local, lse, lse_u, beta, out);
}

std::vector<double> shard_values(const Tensor& x_local, const VocabRange& range, const Tensor& ids) {
  OPD_ON_CUDA_STAGED("shard_values", x_local, shard_values(x_local, range, ids));
  return cpu::shard_values(x_local, range, ids);
}

}  // namespace opd::backend
