#include "app/job_config.hpp"

#include <algorithm>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "core/error.hpp"
#include "core/toml_config.hpp"
#include "data/prompt_template.hpp"

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

distill::EvalConfig read_eval(ConfigTable& t,
                              model::SamplingConfig defaults = {0.0f, 0, 1.0f, 128, {}, 0}) {
  distill::EvalConfig e;
  e.samples = t.get_int("samples", 1, 1, 1 << 16);
  e.sampling = read_sampling(t, defaults);
  e.batch_size = t.get_int("batch_size", 64, 1, 1 << 20);
  e.limit = t.get_int("limit", 0, 0, kBig);
  e.marker = t.get_choice("marker", "auto", {"auto", "answer", "boxed"});
  e.stop = t.get<std::vector<std::string>>("stop", {});
  return e;
}

void read_distill(ConfigTable& t, StageConfig& s) {
  distill::DistillConfig& d = s.distill;
  d.teacher = t.require<std::string>("teacher");
  d.allow_teacher_change = t.get<bool>("allow_teacher_change", false);
  if (d.teacher.rfind('@', 0) == 0 && d.teacher.substr(1) == s.name)
    input_error(s.where, "a stage cannot be its own teacher", "name an earlier stage");
  d.signal = t.get_choice("signal", "topk", {"sampled", "topk", "full"});
  d.topk = static_cast<int>(t.get_int("topk", 16, 1, 4096));
  d.teacher_temperature = t.get_double("teacher_temperature", 1.0, 1e-3, 100.0);
  d.prompts_per_step = t.get_int("prompts_per_step", 8, 1, 1 << 20);
  d.samples_per_prompt = t.get_int("samples_per_prompt", 4, 1, 1 << 16);
  d.rows_per_block = t.get_int("rows_per_block", 64, 1, 1 << 20);
  d.overlap = t.get_int("overlap", 0, 0, 1) != 0;
  ConfigTable r = t.table_or_empty("rollout");
  d.sampling = read_sampling(r, model::SamplingConfig{1.0f, 0, 1.0f, 64, {}, 0});
  ConfigTable o = t.table_or_empty("objective");
  distill::ObjectiveConfig& oc = d.objective;
  oc.kind = o.get_choice("kind", "pg_topk",
                         {"pg_sampled", "pg_topk", "topk_rkl", "full_rkl", "fkl", "jsd", "sft"});
  oc.support = o.get_choice("support", "student",
                            {"student", "teacher", "intersection", "union", "symdiff"});
  oc.weights = o.get_choice("weights", "student_p", {"student_p", "teacher_p", "uniform"});
  oc.baseline = o.get_choice("baseline", "none", {"none", "kl_full", "kl_topk"});
  oc.aggregation = o.get_choice("aggregation", "token_mean", {"token_mean", "seq_mean", "sum"});
  oc.teacher_weight = o.get_double("teacher_weight", 1.0, 0.0, 1e6);
  oc.reward_weight = o.get_double("reward_weight", 0.0, 0.0, 1e6);
  oc.discount = o.get_double("discount", 0.0, 0.0, 1.0);
  oc.importance = o.get<bool>("importance", true);
  oc.clip = o.get_double("clip", 0.0, 0.0, 1.0);
  oc.beta = o.get_double("beta", 0.5, 0.0, 1.0);
  oc.tail = o.get<bool>("tail", false);
  oc.gkd_lambda = o.get_double("gkd_lambda", 1.0, 0.0, 1.0);
  ConfigTable g = t.table_or_empty("diag");
  d.diag_k = static_cast<int>(g.get_int("k", d.topk, 1, 4096));
  d.position_buckets = static_cast<int>(g.get_int("position_buckets", 4, 1, 64));
  if (d.signal == "topk" && d.diag_k != d.topk)
    input_error(g.key_path("k"), "with signal = \"topk\" the overlap diagnostics use the signal's k (" +
                                     std::to_string(d.topk) + ")",
                "leave diag.k unset or equal to topk");
  d.teacher_template = t.get<std::string>("teacher_template", "");
  if (!d.teacher_template.empty()) data::validate_template(d.teacher_template, t.key_path("teacher_template"));
  d.data_weight = t.get_double("data_weight", 1.0, 0.0, 1e12);
  for (ConfigTable m : t.tables("mix"))
    d.mix.push_back({m.require<std::string>("data"), m.get_double("weight", 1.0, 0.0, 1e12)});
  ConfigTable sel = t.table_or_empty("prompt_select");
  d.select_fraction = sel.get_double("fraction", 1.0, 1e-6, 1.0);
  d.select_candidates = sel.get_int("candidates", 0, 0, kBig);
  if (auto e = t.find_table("eval")) {
    d.eval_data = e->require<std::string>("data");
    d.eval_every = e->get_int("every", 0, 0, kBig);
    s.eval = read_eval(*e);
  }
}

StageConfig read_stage(ConfigTable t) {
  StageConfig s;
  s.where = t.location();
  s.name = t.require<std::string>("name");
  s.kind = t.require_choice("kind", {"pretrain", "sft", "eval", "distill", "teacher_generate"});
  s.model = t.require<std::string>("model");
  s.data = t.require<std::string>("data");
  s.prompt_template = t.get<std::string>("template", "{prompt}");
  data::validate_template(s.prompt_template, t.key_path("template"));
  if (s.kind == "eval") {
    s.eval = read_eval(t);
    return s;
  }
  if (s.kind == "teacher_generate") {
    // The literature's cold-start sampling: temperature 0.7, top-p 0.95.
    s.eval = read_eval(t, model::SamplingConfig{0.7f, 0, 0.95f, 128, {}, 0});
    s.filter.require_marker = t.get<bool>("require_marker", true);
    s.filter.require_correct = t.get<bool>("require_correct", false);
    s.filter.repeat_ngram = static_cast<int>(t.get_int("repeat_ngram", 8, 1, 4096));
    s.filter.repeat_max = static_cast<int>(t.get_int("repeat_max", 3, 1, 1 << 20));
    return s;
  }
  // Every training stage (pretrain, sft, distill).
  s.steps = t.require_int("steps", 1, kBig);
  s.log_every = t.get_int("log_every", s.log_every, 1, kBig);
  s.vocab_chunk = t.get_int("vocab_chunk", s.vocab_chunk, 1, 1 << 24);
  s.optim = read_optim(t.table_or_empty("optim"));
  ConfigTable c = t.table_or_empty("checkpoint");
  s.checkpoint.every = c.get_int("every", 0, 0, kBig);
  s.checkpoint.keep_last = c.get_int("keep_last", 2, 1, kBig);
  s.checkpoint.keep_every = c.get_int("keep_every", 0, 0, kBig);
  if (s.kind == "distill") {
    read_distill(t, s);
    return s;
  }
  // Next-token training on fixed data (pretrain, sft).
  s.data_format = t.get_choice("data_format", "auto", {"auto", "jsonl", "text"});
  s.loss = t.get_choice("loss", "auto", {"auto", "all", "response"});
  if (s.loss == "auto") s.loss = s.kind == "sft" ? "response" : "all";
  s.batch_size = t.get_int("batch_size", s.batch_size, 1, 1 << 20);
  s.seq_len = t.get_int("seq_len", s.seq_len, 2, 1 << 22);
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
  job.run.name = run.get<std::string>("name", "");
  job.run.seed = static_cast<uint64_t>(run.get_int("seed", 1234, 0, std::numeric_limits<int64_t>::max()));
  job.run.threads = static_cast<int>(run.get_int("threads", 0, 0, 1024));
  job.run.walltime = run.get_double("walltime", 0.0, 0.0, 1e9);
  job.run.walltime_margin = run.get_double("walltime_margin", 30.0, 0.0, 1e9);
  job.run.device = run.get_choice("device", "cpu", {"cpu", "cuda"});
  job.run.precision = run.get_choice("precision", "fp32", {"fp32", "bf16"});
  ConfigTable par = t.table_or_empty("parallel");
  auto read_layout = [&](const std::string& key, comm::Layout def) {
    ConfigTable l = par.table_or_empty(key);
    comm::Layout out;
    out.tp = static_cast<int>(l.get_int("tp", def.tp, 1, 1 << 16));
    out.pp = static_cast<int>(l.get_int("pp", def.pp, 1, 1 << 16));
    out.dp = static_cast<int>(l.get_int("dp", def.dp, 0, 1 << 20));
    return out;
  };
  job.parallel.student = read_layout("student", comm::Layout{1, 1, 0});
  job.parallel.teacher = read_layout("teacher", job.parallel.student);
  job.parallel.placement = par.get_choice("placement", "colocated", {"colocated", "split"});
  job.parallel.zero = static_cast<int>(par.get_int("zero", 0, 0, 1));
  job.parallel.micro_batches = static_cast<int>(par.get_int("micro_batches", 0, 0, 1 << 16));
  ConfigTable tok = t.table_or_empty("tokenizer");
  job.tokenizer = tok.get_choice("kind", "char", {"char", "hf", "tiktoken"});
  if (job.tokenizer != "char")  // the file: tokenizer.json (hf) or a rank file (tiktoken)
    job.tokenizer += ":" + tok.require<std::string>("path");

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
    StageConfig s = read_stage(st);
    if (!seen.insert(s.name).second)
      input_error(s.where, "duplicate stage name '" + s.name + "'", "give every stage its own name");
    for (const std::string* ref : {&s.data, &s.distill.eval_data})
      if (ref->rfind('@', 0) == 0 &&
          std::none_of(job.stages.begin(), job.stages.end(), [&](const StageConfig& e) {
            return e.name == ref->substr(1) && e.kind == "teacher_generate";
          }))
        input_error(s.where, "data \"" + *ref + "\" names no earlier teacher_generate stage",
                    "use \"@NAME\" of a teacher_generate stage listed before this one, or a path");
    for (const std::string* ref : {&s.model, &s.distill.teacher})
      if (ref->rfind('@', 0) == 0 && (!seen.count(ref->substr(1)) || ref->substr(1) == s.name))
        input_error(s.where, "\"" + *ref + "\" names no earlier stage",
                    "use \"@NAME\" of a stage listed before this one");
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
