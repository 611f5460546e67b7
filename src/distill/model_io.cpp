#include "distill/model_io.hpp"

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "core/sha256.hpp"
#include "model/param_specs.hpp"

namespace opd::distill {

core::Tensor host_copy(const core::Tensor& x) { return backend::on_device(x, core::Device::Host); }

void write_model_config(io::CheckpointWriter& w, const model::ModelConfig& c,
                        const std::string& tokenizer_id) {
  w.write_int("config/model/vocab_size", c.vocab_size);
  w.write_int("config/model/d_model", c.d_model);
  w.write_int("config/model/n_layers", c.n_layers);
  w.write_int("config/model/n_heads", c.n_heads);
  w.write_int("config/model/n_kv_heads", c.n_kv_heads);
  w.write_int("config/model/head_dim", c.head_size());
  w.write_int("config/model/d_ff", c.d_ff);
  w.write_int("config/model/max_seq_len", c.max_seq_len);
  w.write_double("config/model/rope_theta", c.rope_theta);
  w.write_double("config/model/norm_eps", c.norm_eps);
  w.write_int("config/model/qkv_bias", c.qkv_bias);
  w.write_int("config/model/qk_norm", c.qk_norm);
  w.write_int("config/model/tie_embeddings", c.tie_embeddings);
  w.write_double("config/model/init_std", c.init_std);
  w.write_string("config/tokenizer", tokenizer_id);
}

void write_model(io::CheckpointWriter& w, const model::Transformer& m,
                 const std::string& tokenizer_id) {
  write_model_config(w, m.config(), tokenizer_id);
  const model::ModelConfig& c = m.config();
  // Every parameter in the one fixed order on every rank (the writer may be collective over the
  // model's tp x pp ranks); a pipeline stage writes empty blocks for the other stages' layers.
  for (const model::ParamSpec& sp : model::parameter_specs(c)) {
    if (!m.params().contains(sp.name)) {
      w.write_tensor("model/" + sp.name, core::Tensor::empty({0}), sp.shape);
      continue;
    }
    const model::Param& p = m.params().get(sp.name);
    w.write_tensor("model/" + sp.name, host_copy(p.value), p.global_shape, p.shard_offset());
  }
}

model::ModelConfig read_model_config(io::CheckpointReader& r) {
  model::ModelConfig c;
  c.vocab_size = r.read_int("config/model/vocab_size");
  c.d_model = r.read_int("config/model/d_model");
  c.n_layers = r.read_int("config/model/n_layers");
  c.n_heads = r.read_int("config/model/n_heads");
  c.n_kv_heads = r.read_int("config/model/n_kv_heads");
  c.head_dim = r.read_int("config/model/head_dim");
  c.d_ff = r.read_int("config/model/d_ff");
  c.max_seq_len = r.read_int("config/model/max_seq_len");
  c.rope_theta = r.read_double("config/model/rope_theta");
  c.norm_eps = r.read_double("config/model/norm_eps");
  c.qkv_bias = r.read_int("config/model/qkv_bias") != 0;
  c.qk_norm = r.read_int("config/model/qk_norm") != 0;
  c.tie_embeddings = r.read_int("config/model/tie_embeddings") != 0;
  c.init_std = r.read_double("config/model/init_std");
  return c;
}

void check_tokenizer(io::CheckpointReader& r, const std::string& tokenizer_id) {
  const std::string have = r.read_string("config/tokenizer");
  if (have != tokenizer_id)
    input_error(r.path(), "checkpoint was made with tokenizer '" + have + "', the job uses '" +
                              tokenizer_id + "'",
                "use the same tokenizer as the model was trained with");
}

namespace {

// A block read carries no checksum check (that needs every byte), so the ranks of a group share
// the verification of the sharded parameters: each verifies every size-th one.
void verify_shards(io::CheckpointReader& r, const model::ParamSet& params) {
  const parallel::TensorParallel& tp = params.tensor_parallel();  // (a stage's own parameters)
  int i = 0;
  for (const auto& p : params.all())
    if (p.sharded() && i++ % tp.size() == tp.rank()) r.verify("model/" + p.name);
}

}  // namespace

std::string model_content_hash(io::CheckpointReader& r) {
  std::string text;
  for (const io::DatasetInfo& d : r.list()) {
    if (d.name.rfind("config/model/", 0) == 0) {
      text += d.name + "=" + (d.type == io::StoredType::F64 ? std::to_string(r.read_double(d.name))
                                                            : std::to_string(r.read_int(d.name)));
      text += "\n";
    } else if (d.name.rfind("model/", 0) == 0) {
      text += d.name + ":" + std::to_string(r.stored_checksum(d.name)) + "\n";
    }
  }
  text += "tokenizer=" + r.read_string("config/tokenizer") + "\n";
  return core::sha256_hex(text);
}

void read_model_weights(io::CheckpointReader& r, model::Transformer& m) {
  for (auto& p : m.params().all()) read_shard(r, "model/" + p.name, p, p.value);
  m.params().values_changed();
  verify_shards(r, m.params());
}

void read_shard(io::CheckpointReader& r, const std::string& name, const model::Param& p,
                core::Tensor& dst) {
  const io::DatasetInfo info = r.info(name);
  if (info.shape != p.global_shape)
    input_error(r.path(), name + " has shape " + core::shape_str(info.shape) + ", the model needs " +
                              core::shape_str(p.global_shape),
                "load the checkpoint into the model it was written for");
  core::Tensor into = dst.is_host() ? dst : core::Tensor::empty(dst.shape(), dst.dtype());
  if (p.sharded()) r.read_tensor_into(name, into, p.shard_offset());
  else r.read_tensor_into(name, into);  // whole: checksum verified
  if (!dst.is_host()) backend::copy(into, dst);
}


std::unique_ptr<model::Transformer> load_model(const std::string& path,
                                               const std::string& tokenizer_id,
                                               const model::ModelParallel& mp) {
  io::CheckpointReader r(path);
  check_tokenizer(r, tokenizer_id);
  auto m = std::make_unique<model::Transformer>(read_model_config(r), mp);
  read_model_weights(r, *m);
  return m;
}

}  // namespace opd::distill
