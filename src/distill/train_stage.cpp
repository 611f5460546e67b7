#include "distill/train_stage.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/timer.hpp"
#include "data/dataset.hpp"
#include "data/prompt_template.hpp"
#include "data/sequence.hpp"
#include "distill/metrics_log.hpp"
#include "distill/dp_optimizer.hpp"
#include "distill/model_io.hpp"
#include "distill/progress.hpp"
#include "io/checkpoint.hpp"
#include "model/lm_loss.hpp"
#include "model/optimizer.hpp"

namespace opd::distill {

namespace fs = std::filesystem;
using core::DType;
using core::Tensor;

TrainStage::TrainStage(const JobConfig& job, const StageConfig& stage,
                       const data::Tokenizer& tokenizer, const comm::Topology& topo)
    : job_(job), cfg_(stage), tok_(tokenizer), topo_(topo), dir_(stage_dir(job, stage.name)) {}

namespace {
// A stable (not std::hash) digest of the stage name: each stage draws its own data order.
uint64_t name_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

bool is_text(const StageConfig& s) {
  if (s.data_format != "auto") return s.data_format == "text";
  return fs::path(s.data).extension() == ".txt";
}
}  // namespace

void TrainStage::prepare() {
  const int dp = topo_.layout().dp;
  if (cfg_.batch_size % dp != 0)
    input_error(cfg_.where, "batch_size " + std::to_string(cfg_.batch_size) +
                                " does not split over " + std::to_string(dp) + " data-parallel ranks",
                "make batch_size a multiple of dp");
  const int micro = micro_batches_of(job_, topo_);
  if ((cfg_.batch_size / dp) % micro != 0)
    input_error(cfg_.where, "batch_size " + std::to_string(cfg_.batch_size) + " gives " +
                                std::to_string(cfg_.batch_size / dp) + " rows per data-parallel rank, " +
                                "which do not split into " + std::to_string(micro) + " micro-batches",
                "make batch_size / dp a multiple of [parallel].micro_batches (0: pp)");
  const uint64_t data_seed = job_.run.seed ^ name_hash(cfg_.name);
  if (is_text(cfg_)) {
    text_.emplace(tok_.encode(data::load_text(resolve_data(job_, cfg_.data))), cfg_.batch_size, cfg_.seq_len,
                  data_seed);
  } else {
    std::vector<data::TokenSequence> seqs;
    for (const auto& ex : data::load_jsonl(resolve_data(job_, cfg_.data)))
      seqs.push_back(data::build_sequence(tok_, data::apply_template(cfg_.prompt_template, ex.prompt),
                                          ex.response, cfg_.loss == "response"));
    sequences_.emplace(std::move(seqs), cfg_.batch_size, cfg_.seq_len, data_seed, tok_.pad_id(),
                       data::Overlong::Reject);
  }
  // The model must exist (or be made by an earlier stage) and fit the tokenizer and sequences.
  const model::ModelConfig mc = model_config_of(job_, cfg_.model, tok_);
  if (mc.vocab_size < tok_.vocab_size())
    input_error(cfg_.where, "model '" + cfg_.model + "' has vocab_size " +
                                std::to_string(mc.vocab_size) + " < the tokenizer's " +
                                std::to_string(tok_.vocab_size()),
                "raise vocab_size or leave it 0 to take the tokenizer's");
  mc.validate("model." + cfg_.model);
  check_model_fits_layout(job_, cfg_.model, tok_, topo_.student_layout(), "student");
  if (cfg_.seq_len > mc.max_seq_len)
    input_error(cfg_.where, "seq_len " + std::to_string(cfg_.seq_len) +
                                " is longer than the model's context " +
                                std::to_string(mc.max_seq_len),
                "lower seq_len or raise the model's max_seq_len");
}

data::TokenBatch TrainStage::next_batch() {
  return sequences_ ? sequences_->next() : text_->next();
}

void TrainStage::save(model::Transformer& m, DataParallelOptimizer& opt, int64_t step,
                      int64_t tokens_seen) {
  // Every replica holds the same model: the tp ranks of replica 0 write it together (each its
  // shards); with ZeRO-1 the other replicas send them the optimizer moments they own.
  const bool root = topo_.is_root(), writer = topo_.dp_rank() == 0;
  saved_step_ = step;
  io::CheckpointDir ckdir((fs::path(dir_) / "checkpoints").string());
  core::Stopwatch clock;
  std::optional<io::CheckpointWriter> w;
  if (writer) {
    w.emplace(ckdir.path_for_step(step), checkpoint_comm(topo_));
    write_model(*w, m, tok_.describe());
  }
  opt.write(writer ? &*w : nullptr, model::parameter_specs(m.config()));
  if (writer) {
    w->write_int("state/step", step);
    w->write_int("state/tokens_seen", tokens_seen);
    w->write_int("state/data_cursor",
                 static_cast<int64_t>(sequences_ ? sequences_->cursor() : text_->cursor()));
    w->write_string("config/job_toml", job_.toml_text);
    w->write_string("config/stage", cfg_.name);
    w->set_attribute("layout", topo_.describe());
    w->commit();
  }
  if (root) {
    log_checkpoint_io(cfg_.name, ckdir.path_for_step(step), "written", clock.seconds());
    ckdir.publish(step);
    ckdir.prune(cfg_.checkpoint.keep_last, cfg_.checkpoint.keep_every);
  }
  topo_.group().barrier();
}

StageOutcome TrainStage::run(StopCondition& stop) {
  fs::create_directories(fs::path(dir_) / "checkpoints");
  io::CheckpointDir ckdir((fs::path(dir_) / "checkpoints").string());
  std::unique_ptr<model::Transformer> m;
  int64_t step = 0, tokens_seen = 0;
  std::optional<std::string> resume = ckdir.latest_path();
  core::Stopwatch read_clock;
  if (resume) {
    io::CheckpointReader r(*resume);
    check_tokenizer(r, tok_.describe());
    m = std::make_unique<model::Transformer>(read_model_config(r), model_parallel_of(topo_, job_.run));
    read_model_weights(r, *m);
    step = r.read_int("state/step");
    tokens_seen = r.read_int("state/tokens_seen");
    const auto cursor = static_cast<uint64_t>(r.read_int("state/data_cursor"));
    if (sequences_) sequences_->set_cursor(cursor);
    else text_->set_cursor(cursor);
    core::log::info(cfg_.name, ": resuming from ", *resume, " at step ", step);
  } else {
    m = distill::initial_model(job_, cfg_.model, tok_, model_parallel_of(topo_, job_.run));
  }
  DataParallelOptimizer opt(*m, topo_.dp(), job_.parallel.zero != 0);
  if (resume) {
    io::CheckpointReader r(*resume);
    opt.read(r);
    log_checkpoint_io(cfg_.name, *resume, "read", read_clock.seconds());
  }
  std::optional<MetricsLog> metrics;
  if (topo_.is_root()) metrics.emplace((fs::path(dir_) / "metrics.jsonl").string(), resume ? step : -1);
  const comm::Communicator& dp = topo_.dp();
  core::log::info(cfg_.name, ": ", cfg_.kind, " of a ", m->params().global_numel(), "-parameter model (",
                  m->config().describe(), ") for ", cfg_.steps, " steps");

  Progress progress(cfg_.name, step, cfg_.steps);
  const int64_t first_step = step;
  while (step < cfg_.steps) {
    // Every rank must agree to stop at the same boundary (a signal may reach only some).
    const bool stop_here =
        step > first_step && topo_.group().allreduce_max(stop.should_stop(step) ? 1 : 0);
    if (stop_here) {
      if (saved_step_ != step) save(*m, opt, step, tokens_seen);  // else just written
      core::log::info(cfg_.name, ": stopping at step ", step, " (", stop.reason().empty() ? std::string("another rank was told to stop") : stop.reason(),
                      "); checkpoint written, resubmit to continue");
      return StageOutcome::Interrupted;
    }
    core::Stopwatch clock;
    const double comm_at_start = comm::mpi_seconds();
    // Every rank draws the same global batch and takes its rows; the loss is the token mean
    // over the global batch, so the summed gradients equal the single-rank gradient.
    data::TokenBatch batch = next_batch();
    const int64_t count = batch.num_targets();
    const int64_t rows = batch.batch / dp.size(), T = batch.seq_len;
    const auto first = static_cast<std::ptrdiff_t>(topo_.dp_rank() * rows * T);
    const auto local = static_cast<std::ptrdiff_t>(rows * T);
    Tensor ids = Tensor::from_vector(std::vector<int32_t>(batch.inputs.begin() + first, batch.inputs.begin() + first + local), {rows, T});
    Tensor targets = Tensor::from_vector(std::vector<int32_t>(batch.targets.begin() + first, batch.targets.begin() + first + local), {rows, T});
    Tensor pos = model::causal_positions(rows, T);
    m->params().zero_grad();
    const float per_token = count > 0 ? 1.0f / static_cast<float>(count) : 0.0f;
    model::LossSum loss =
        model::lm_cross_entropy(*m, ids, pos, targets, per_token, cfg_.vocab_chunk,
                                micro_batches_of(job_, topo_));
    if (dp.size() > 1) {
      dp.allreduce_sum(&loss.sum, 1);
      loss.count = count;
    }
    const double lr = model::scheduled_lr(cfg_.optim, step, cfg_.steps);
    const double gnorm = opt.step(cfg_.optim, lr);
    const double comm_seconds = comm::mpi_seconds() - comm_at_start;  // every collective
    ++step;
    tokens_seen += batch.batch * batch.seq_len;
    const double secs = clock.seconds();
    if (!std::isfinite(loss.mean()))
      input_error(cfg_.where, "loss became " + std::to_string(loss.mean()) + " at step " +
                                  std::to_string(step),
                  "lower optim.lr or raise optim.warmup");
    nlohmann::json rec = {{"step", step},          {"loss", loss.mean()},
                          {"lr", lr},              {"grad_norm", gnorm},
                          {"tokens", count},       {"tokens_seen", tokens_seen},
                          {"step_seconds", secs},  {"comm_seconds", comm_seconds}};
    if (metrics) metrics->write(rec);
    progress.update(step, loss.mean(), lr, gnorm, static_cast<double>(batch.batch * batch.seq_len) / secs);
    if (step % cfg_.log_every == 0 || step == cfg_.steps) progress.print();
    if (cfg_.checkpoint.every > 0 && step % cfg_.checkpoint.every == 0 && step < cfg_.steps)
      save(*m, opt, step, tokens_seen);
  }
  save(*m, opt, step, tokens_seen);
  if (topo_.is_root()) std::ofstream(fs::path(dir_) / "DONE") << "step " << step << "\n";
  return StageOutcome::Done;
}

}  // namespace opd::distill
