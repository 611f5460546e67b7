#include "distill/dp_optimizer.hpp"

#include <map>

#include "comm/device_group.hpp"
#include "core/error.hpp"
#include "distill/model_io.hpp"
#include "parallel/zero_partition.hpp"

namespace opd::distill {

namespace {

std::vector<int> owners(const model::ParamSet& params, const comm::Communicator& dp, bool zero) {
  std::vector<int64_t> sizes;
  for (const auto& p : params.all()) sizes.push_back(p.value.numel());
  return zero ? parallel::zero_owners(sizes, dp.size()) : std::vector<int>(sizes.size(), -1);
}

std::vector<bool> owned_by(const std::vector<int>& owner, int rank) {
  std::vector<bool> mine;
  for (int o : owner) mine.push_back(o < 0 || o == rank);
  return mine;
}

}  // namespace

DataParallelOptimizer::DataParallelOptimizer(model::Transformer& model,
                                             const comm::Communicator& dp, bool zero)
    : model_(model),
      params_(model.params()),
      dp_(dp),
      buckets_(model.params().grads(), dp),
      zero_(zero && dp.size() > 1),
      owner_(owners(params_, dp, zero_)),
      adam_([&] {
        const std::vector<bool> mine = owned_by(owner_, dp.rank());
        return model::AdamW(params_, &mine);
      }()) {
  model_.set_gradient_hook([this](std::size_t i) { buckets_.ready(i); });
}

DataParallelOptimizer::~DataParallelOptimizer() { model_.set_gradient_hook({}); }

double DataParallelOptimizer::step(const model::OptimConfig& cfg, double lr) {
  buckets_.finish();
  const double norm = adam_.step(params_, cfg, lr);
  if (zero_)
    for (std::size_t i = 0; i < params_.size(); ++i) {
      core::Tensor& value = params_[i].value;
      if (value.is_host())
        dp_.broadcast(value.raw(), static_cast<int64_t>(value.bytes()), owner_[i]);
      else
        dp_.device_group().broadcast(value, owner_[i]);
    }
  params_.values_changed();  // (ZeRO: the broadcast wrote the shards other ranks updated)
  return norm;
}

void DataParallelOptimizer::write(io::CheckpointWriter* w,
                                  const std::vector<model::ParamSpec>& specs) {
  const bool root = dp_.rank() == 0;
  OPD_CHECK(root == (w != nullptr), "the checkpoint writer lives on data-parallel rank 0");
  // The owners' moments travel to the writing rank (ZeRO-1), through host memory.
  std::vector<core::Tensor> m_all(params_.size()), v_all(params_.size());
  for (std::size_t i = 0; i < params_.size(); ++i) {
    core::Tensor m = adam_.exp_avg()[i], v = adam_.exp_avg_sq()[i];
    const int owner = owner_[i] < 0 ? 0 : owner_[i];
    if (owner != 0) {
      if (dp_.rank() == owner) {
        m = host_copy(m);
        v = host_copy(v);
        dp_.send(m.raw(), static_cast<int64_t>(m.bytes()), 0, 2 * static_cast<int>(i));
        dp_.send(v.raw(), static_cast<int64_t>(v.bytes()), 0, 2 * static_cast<int>(i) + 1);
      } else if (root) {
        m = core::Tensor::empty(params_[i].value.shape());
        v = core::Tensor::empty(params_[i].value.shape());
        dp_.recv(m.raw(), static_cast<int64_t>(m.bytes()), owner, 2 * static_cast<int>(i));
        dp_.recv(v.raw(), static_cast<int64_t>(v.bytes()), owner, 2 * static_cast<int>(i) + 1);
      }
    }
    m_all[i] = m;
    v_all[i] = v;
  }
  if (!root) return;
  // Every writer names every parameter's moments in the same order (the writer is collective
  // over the model's tp x pp ranks); a rank without the parameter writes an empty block.
  w->write_int("optimizer/step", adam_.steps());
  std::map<std::string, std::size_t> local;
  for (std::size_t i = 0; i < params_.size(); ++i) local[params_[i].name] = i;
  for (const model::ParamSpec& sp : specs) {
    const auto it = local.find(sp.name);
    for (int second = 0; second < 2; ++second) {
      const std::string name =
          std::string(second ? "optimizer/exp_avg_sq/" : "optimizer/exp_avg/") + sp.name;
      if (it == local.end()) {
        w->write_tensor(name, core::Tensor::empty({0}), sp.shape);
        continue;
      }
      const model::Param& p = params_[it->second];
      const core::Tensor& t = second ? v_all[it->second] : m_all[it->second];
      w->write_tensor(name, host_copy(t), p.global_shape, p.shard_offset());
    }
  }
}

void DataParallelOptimizer::read(io::CheckpointReader& r) {
  adam_.set_steps(r.read_int("optimizer/step"));
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (!adam_.owns(i)) continue;
    read_shard(r, "optimizer/exp_avg/" + params_[i].name, params_[i], adam_.exp_avg()[i]);
    read_shard(r, "optimizer/exp_avg_sq/" + params_[i].name, params_[i], adam_.exp_avg_sq()[i]);
  }
}

}  // namespace opd::distill
