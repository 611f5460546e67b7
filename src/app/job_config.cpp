#include "app/job_config.hpp"

#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "core/error.hpp"
#include "core/toml_config.hpp"

namespace opd::app {

using core::ConfigTable;
using distill::JobConfig;
using distill::StageConfig;

namespace {

constexpr int64_t kBig = std::numeric_limits<int32_t>::max();

model::ModelConfig read_model(ConfigTable t) {
  model::ModelConfig m;
  m.vocab_size = t.get_int("vocab_size", 0, 0, kBig);
  m.d_model = t.get_int("d_model", m.d_model, 1, 1 << 16);
  m.n_layers = t.get_int("n_layers", m.n_layers, 1, 1024);
  m.n_heads = t.get_int("n_heads", m.n_heads, 1, 1024);
  m.n_kv_heads = t.get_int("n_kv_heads", m.n_heads, 1, 1024);
  m.head_dim = t.get_int("head_dim", 0, 0, 4096);
  m.d_ff = t.get_int("d_ff", m.d_ff, 1, 1 << 20);
  m.max_seq_len = t.get_int("max_seq_len", m.max_seq_len, 2, 1 << 22);
  m.rope_theta = t.get_double("rope_theta", m.rope_theta, 1e-6, 1e12);
  m.norm_eps = t.get_double("norm_eps", m.norm_eps, 1e-12, 1.0);
  m.qkv_bias = t.get<bool>("qkv_bias", false);
  m.qk_norm = t.get<bool>("qk_norm", false);
  m.tie_embeddings = t.get<bool>("tie_embeddings", false);
  m.init_std = t.get_double("init_std", m.init_std, 1e-8, 10.0);
  return m;
}

model::OptimConfig read_optim(ConfigTable t) {
  model::OptimConfig o;
  o.lr = t.get_double("lr", o.lr, 0.0, 10.0);
  o.min_lr_ratio = t.get_double("min_lr_ratio", 0.0, 0.0, 1.0);
  o.warmup = t.get_int("warmup", 0, 0, kBig);
  o.schedule = t.get_choice("schedule", "constant", {"constant", "linear", "cosine"});
  o.beta1 = t.get_double("beta1", o.beta1, 0.0, 0.999999);
  o.beta2 = t.get_double("beta2", o.beta2, 0.0, 0.999999999);
  o.eps = t.get_double("eps", o.eps, 1e-30, 1.0);
  o.weight_decay = t.get_double("weight_decay", 0.0, 0.0, 10.0);
  o.grad_clip = t.get_double("grad_clip", 1.0, 0.0, 1e9);
  return o;
}

model::SamplingConfig read_sampling(ConfigTable& t, model::SamplingConfig s) {
  s.temperature = static_cast<float>(t.get_double("temperature", s.temperature, 0.0, 100.0));
  s.top_k = static_cast<int>(t.get_int("top_k", s.top_k, 0, kBig));
  s.top_p = static_cast<float>(t.get_double("top_p", s.top_p, 1e-6, 1.0));
  s.max_new_tokens = t.get_int("max_new_tokens", s.max_new_tokens, 1, kBig);
  return s;
}

StageConfig read_stage(ConfigTable t, const std::string& source) {
  StageConfig s;
  s.where = t.location();
  s.name = t.require<std::string>("name");
  s.kind = t.require_choice("kind", {"pretrain", "sft", "eval"});
  s.model = t.require<std::string>("model");
  s.data = t.require<std::string>("data");
  s.data_format = t.get_choice("data_format", "auto", {"auto", "jsonl", "text"});
  if (s.kind == "eval") {
    s.eval.samples = t.get_int("samples", 1, 1, 1 << 16);
    s.eval.sampling = read_sampling(t, model::SamplingConfig{0.0f, 0, 1.0f, 128, {}});
    s.eval.batch_size = t.get_int("batch_size", 64, 1, 1 << 20);
    s.eval.limit = t.get_int("limit", 0, 0, kBig);
    s.eval.marker = t.get_choice("marker", "auto", {"auto", "answer", "boxed"});
    s.eval.stop = t.get<std::vector<std::string>>("stop", {});
  } else {
    s.loss = t.get_choice("loss", "auto", {"auto", "all", "response"});
    if (s.loss == "auto") s.loss = s.kind == "sft" ? "response" : "all";
    s.steps = t.require_int("steps", 1, kBig);
    s.batch_size = t.get_int("batch_size", s.batch_size, 1, 1 << 20);
    s.seq_len = t.get_int("seq_len", s.seq_len, 2, 1 << 22);
    s.log_every = t.get_int("log_every", s.log_every, 1, kBig);
    s.vocab_chunk = t.get_int("vocab_chunk", s.vocab_chunk, 1, 1 << 24);
    s.optim = read_optim(t.table_or_empty("optim"));
    ConfigTable c = t.table_or_empty("checkpoint");
    s.checkpoint.every = c.get_int("every", 0, 0, kBig);
    s.checkpoint.keep_last = c.get_int("keep_last", 2, 1, kBig);
    s.checkpoint.keep_every = c.get_int("keep_every", 0, 0, kBig);
  }
  (void)source;
  return s;
}

}  // namespace

JobConfig parse_job(const std::string& toml_text, const std::string& source_name,
                    const std::vector<std::string>& overrides) {
  toml::table root = core::parse_toml_string(toml_text, source_name);
  for (const auto& o : overrides) core::apply_override(root, o);
  JobConfig job;
  job.path = source_name;
  {
    std::ostringstream os;
    os << root;
    job.toml_text = os.str();
  }
  ConfigTable t(root, source_name);
  ConfigTable run = t.table_or_empty("run");
  job.run.dir = run.get<std::string>("dir", job.run.dir);
  job.run.seed = static_cast<uint64_t>(run.get_int("seed", 1234, 0, std::numeric_limits<int64_t>::max()));
  job.run.threads = static_cast<int>(run.get_int("threads", 0, 0, 1024));
  job.run.walltime = run.get_double("walltime", 0.0, 0.0, 1e9);
  job.run.walltime_margin = run.get_double("walltime_margin", 30.0, 0.0, 1e9);
  ConfigTable tok = t.table_or_empty("tokenizer");
  job.tokenizer = tok.get_choice("kind", "char", {"char"});

  if (auto models = t.find_table("model")) {
    for (const auto& [key, node] : models->raw()) {
      const std::string name(key.str());
      if (!node.is_table())
        input_error(models->key_path(name), "must be a table of model settings",
                    "write [model." + name + "] with d_model, n_layers, ...");
      job.models[name] = read_model(models->table(name));
    }
  }
  std::set<std::string> seen;
  for (ConfigTable st : t.tables("stage")) {
    StageConfig s = read_stage(st, source_name);
    if (!seen.insert(s.name).second)
      input_error(s.where, "duplicate stage name '" + s.name + "'", "give every stage its own name");
    if (s.model.rfind('@', 0) == 0) {
      const std::string ref = s.model.substr(1);
      if (!seen.count(ref) || ref == s.name)
        input_error(s.where, "model = \"" + s.model + "\" names no earlier stage",
                    "use \"@NAME\" of a stage listed before this one");
    }
    job.stages.push_back(std::move(s));
  }
  if (job.stages.empty())
    input_error(source_name, "the job has no [[stage]]", "add at least one [[stage]] table");
  t.finish();
  return job;
}

JobConfig load_job(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path, std::ios::binary);
  if (!in) input_error(path, "cannot read the job file", "check the path");
  std::ostringstream os;
  os << in.rdbuf();
  return parse_job(os.str(), path, overrides);
}

}  // namespace opd::app
