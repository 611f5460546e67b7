#include "distill/distill_stage.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/rng.hpp"
#include "core/timer.hpp"
#include "data/sequence.hpp"
#include "distill/distill_update.hpp"
#include "distill/eval_stage.hpp"
#include "distill/metrics_log.hpp"
#include "distill/model_io.hpp"
#include "distill/progress.hpp"
#include "distill/rollout.hpp"
#include "io/checkpoint.hpp"
#include "io/metrics_h5.hpp"
#include "model/optimizer.hpp"

namespace opd::distill {

namespace fs = std::filesystem;
using core::Tensor;

DistillStage::DistillStage(const JobConfig& job, const StageConfig& stage,
                           const data::Tokenizer& tokenizer)
    : job_(job), cfg_(stage), tok_(tokenizer), dir_(stage_dir(job, stage.name)) {}

void DistillStage::prepare() {
  const DistillConfig& dc = cfg_.distill;
  check_objective(dc, cfg_.where);
  // Student and teacher: both must exist (or be made by earlier stages), share the tokenizer
  // (checked inside model_config_of for checkpoint files) and the vocabulary.
  const model::ModelConfig student = model_config_of(job_, cfg_.model, tok_);
  const model::ModelConfig teacher = model_config_of(job_, dc.teacher, tok_);
  if (student.vocab_size != teacher.vocab_size)
    input_error(cfg_.where, "the student's vocabulary (" + std::to_string(student.vocab_size) +
                                ") and the teacher's (" + std::to_string(teacher.vocab_size) +
                                ") differ",
                "distil between models of the same tokenizer");
  const std::string data_path = resolve_data(job_, cfg_.data);
  prompts_ = data::load_jsonl(data_path);
  const bool needs_responses = dc.objective.kind == "sft" || dc.objective.gkd_lambda < 1.0;
  const bool needs_answers = dc.objective.reward_weight != 0.0;
  std::vector<data::TokenSequence> seqs;
  int64_t longest = 0;
  for (std::size_t i = 0; i < prompts_.size(); ++i) {
    const std::string where = data_path + ":" + std::to_string(i + 1);
    if (needs_responses && prompts_[i].response.empty())
      input_error(where, "example has no \"response\"",
                  "objective '" + dc.objective.kind + "' (or gkd_lambda < 1) trains on the data's responses");
    if (needs_answers && prompts_[i].answer.empty())
      input_error(where, "example has no \"answer\"", "reward_weight needs a reference answer per prompt");
    seqs.push_back(data::build_prompt(tok_, prompts_[i].prompt));
    const auto len = static_cast<int64_t>(seqs.back().tokens.size());
    if (len >= student.max_seq_len || len >= teacher.max_seq_len)
      input_error(where, "prompt has " + std::to_string(len) + " tokens, the context is " +
                             std::to_string(std::min(student.max_seq_len, teacher.max_seq_len)),
                  "shorten the prompt or use models with a larger max_seq_len");
    longest = std::max(longest, len);
  }
  sampler_.emplace(std::move(seqs), dc.prompts_per_step, longest, job_.run.seed ^ 0x5eedull,
                   tok_.pad_id(), data::Overlong::Reject);
  if (!dc.eval_data.empty()) {
    eval_examples_ = data::load_jsonl(resolve_data(job_, dc.eval_data));
    for (std::size_t i = 0; i < eval_examples_.size(); ++i)
      if (eval_examples_[i].answer.empty())
        input_error(dc.eval_data + ":" + std::to_string(i + 1), "example has no \"answer\"",
                    "an eval set needs a reference answer per prompt");
  }
}

double DistillStage::evaluate_accuracy(model::Transformer& m) {
  if (eval_examples_.empty()) return std::nan("");
  return evaluate(m, tok_, eval_examples_, cfg_.eval, job_.run.seed ^ 0xe7a1ull).accuracy;
}

StageOutcome DistillStage::run(StopCondition& stop) {
  const DistillConfig& dc = cfg_.distill;
  const fs::path ckdir_path = fs::path(dir_) / "checkpoints";
  fs::create_directories(ckdir_path);
  io::CheckpointDir ckdir(ckdir_path.string());

  core::PhaseTimers phases;
  auto teacher_model = load_model(resolve_checkpoint(job_, dc.teacher), tok_.describe());
  LocalTeacher teacher(std::move(teacher_model), static_cast<float>(dc.teacher_temperature),
                       cfg_.vocab_chunk, dc.rows_per_block);

  std::unique_ptr<model::Transformer> student;
  int64_t step = 0, tokens_seen = 0;
  double acc_student0 = std::nan(""), acc_teacher = std::nan("");
  std::optional<std::string> resume = ckdir.latest_path();
  if (resume) {
    io::CheckpointReader r(*resume);
    check_tokenizer(r, tok_.describe());
    student = std::make_unique<model::Transformer>(read_model_config(r));
    read_model_weights(r, *student);
    step = r.read_int("state/step");
    tokens_seen = r.read_int("state/tokens_seen");
    sampler_->set_cursor(static_cast<uint64_t>(r.read_int("state/data_cursor")));
    acc_student0 = r.read_double("state/accuracy_student_initial");
    acc_teacher = r.read_double("state/accuracy_teacher");
    const std::string teacher_path = r.read_string("teacher/path");
    if (teacher_path != resolve_checkpoint(job_, dc.teacher))
      input_error(*resume, "was distilled from teacher " + teacher_path + ", the job now names " +
                               resolve_checkpoint(job_, dc.teacher),
                  "resume with the same teacher, or start a new run directory");
    core::log::info(cfg_.name, ": resuming from ", *resume, " at step ", step);
  } else {
    student = initial_model(job_, cfg_.model, tok_);
  }
  if (student->config().vocab_size != teacher.config().vocab_size)
    input_error(cfg_.where, "the student's and the teacher's vocabularies differ",
                "distil between models of the same tokenizer");
  model::AdamW opt(student->params());
  if (resume) {
    io::CheckpointReader r(*resume);
    read_optimizer(r, *student, opt);
  } else if (!eval_examples_.empty()) {
    core::ScopedPhase p(phases, "eval");
    acc_student0 = evaluate_accuracy(*student);
    acc_teacher = evaluate_accuracy(teacher.model());
  }
  if (!eval_examples_.empty())
    core::log::info(cfg_.name, ": accuracy before distillation: student ", acc_student0,
                    ", teacher ", acc_teacher);

  const auto gap_recovery = [&](double acc) {
    return (acc - acc_student0) / (acc_teacher - acc_student0);
  };
  auto save = [&](int64_t at) {
    core::ScopedPhase p(phases, "checkpoint");
    io::CheckpointWriter w(ckdir.path_for_step(at));
    write_model(w, *student, tok_.describe());
    write_optimizer(w, *student, opt);
    w.write_int("state/step", at);
    w.write_int("state/tokens_seen", tokens_seen);
    w.write_int("state/data_cursor", static_cast<int64_t>(sampler_->cursor()));
    w.write_double("state/accuracy_student_initial", acc_student0);
    w.write_double("state/accuracy_teacher", acc_teacher);
    w.write_string("teacher/path", resolve_checkpoint(job_, dc.teacher));
    w.write_string("config/job_toml", job_.toml_text);
    w.write_string("config/stage", cfg_.name);
    w.set_attribute("layout", "tp1.pp1.dp1");
    w.commit();
    ckdir.publish(at);
    ckdir.prune(cfg_.checkpoint.keep_last, cfg_.checkpoint.keep_every);
  };

  MetricsLog jsonl((fs::path(dir_) / "metrics.jsonl").string(), resume ? step : -1);
  io::MetricsH5 h5((fs::path(dir_) / "metrics.h5").string(), resume ? step : -1);
  model::SamplingConfig sampling = dc.sampling;
  if (dc.signal != "sampled") sampling.record_topk = dc.topk;
  else if (dc.diag_k > 0) sampling.record_topk = 0;
  const Signal mode = signal_mode(dc.signal);
  const int64_t per_step = dc.prompts_per_step * dc.samples_per_prompt;
  core::log::info(cfg_.name, ": distilling a ", student->params().numel(), "-parameter student from a ",
                  teacher.model().params().numel(), "-parameter teacher, objective ",
                  dc.objective.kind, ", signal ", dc.signal, ", ", cfg_.steps, " steps of ",
                  per_step, " rollouts");
  core::Stopwatch wall;
  const int64_t first_step = step;
  double last_acc = std::nan("");
  while (step < cfg_.steps) {
    if (step > first_step && stop.should_stop(step)) {
      save(step);
      core::log::info(cfg_.name, ": stopping at step ", step, " (", stop.reason(),
                      "); checkpoint written, resubmit to continue");
      return StageOutcome::Interrupted;
    }
    core::Stopwatch step_clock;
    const data::TokenBatch pb = sampler_->next();
    std::vector<int64_t> chosen(pb.sources.begin(), pb.sources.end());
    // GKD mixing: a fraction gkd_lambda of the steps on the student's own samples.
    core::RngStream coin(job_.run.seed, core::RngPurpose::Data, static_cast<uint64_t>(step));
    const bool on_policy = dc.objective.kind != "sft" && coin.uniform_double() < dc.objective.gkd_lambda;
    RolloutBatch rb;
    {
      core::ScopedPhase p(phases, "rollout");
      rb = on_policy ? make_rollouts(*student, tok_, prompts_, chosen, dc.samples_per_prompt,
                                     sampling, job_.run.seed, static_cast<uint64_t>(step * per_step),
                                     cfg_.eval.marker)
                     : make_fixed_batch(tok_, prompts_, chosen, student->config().max_seq_len,
                                        cfg_.eval.marker);
    }
    ScoreReply reply;
    {
      core::ScopedPhase p(phases, "teacher");
      ScoreRequest req;
      req.ids = rb.ids;
      req.rows = Tensor::from_vector(rb.rows, {rb.num_rows()});
      req.targets = Tensor::from_vector(rb.targets, {rb.num_rows()});
      req.mode = mode;
      if (mode != Signal::Sampled) {
        if (!rb.on_policy) {  // fixed data: the student's top-k come from a scoring pass
          rb.k = dc.topk;
          rb.topk = student_topk(*student, rb, dc.topk, dc.rows_per_block);
        }
        req.student_ids = Tensor::from_vector(rb.topk, {rb.num_rows(), rb.k});
      }
      reply = rb.num_rows() > 0 ? teacher.score(req) : ScoreReply{};
    }
    StepMetrics m;
    double gnorm = 0;
    const double lr = model::scheduled_lr(cfg_.optim, step, cfg_.steps);
    {
      core::ScopedPhase p(phases, "update");
      student->params().zero_grad();
      if (rb.num_rows() > 0) m = distill_backward(*student, rb, reply, dc);
      gnorm = opt.step(student->params(), cfg_.optim, lr);
    }
    ++step;
    tokens_seen += rb.num_rows();
    if (dc.eval_every > 0 && step % dc.eval_every == 0 && step < cfg_.steps) {
      core::ScopedPhase p(phases, "eval");
      last_acc = evaluate_accuracy(*student);
      m["eval_accuracy"] = last_acc;
      m["gap_recovery"] = gap_recovery(last_acc);
    }
    const double secs = step_clock.seconds();
    m["step"] = static_cast<double>(step);
    m["lr"] = lr;
    m["grad_norm"] = gnorm;
    m["on_policy"] = on_policy;
    m["tokens_per_second"] = static_cast<double>(rb.num_rows()) / secs;
    for (const auto& [name, s] : phases.take()) m["time_" + name] = s;
    nlohmann::json rec;
    std::vector<std::pair<std::string, double>> row;
    for (const auto& [k, v] : m) {
      rec[k] = std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
      if (k != "step") row.emplace_back(k, v);
    }
    rec["step"] = step;
    jsonl.write(rec);
    h5.append(step, row);
    if (step % cfg_.log_every == 0 || step == cfg_.steps || step == first_step + 1) {
      const double eta = wall.seconds() / static_cast<double>(step - first_step) *
                         static_cast<double>(cfg_.steps - step);
      char buf[320];
      std::snprintf(buf, sizeof buf,
                    "%s step %lld/%lld loss %.4f kl %.4f overlap %.3f acc %.3f tok/s %.0f eta %s",
                    cfg_.name.c_str(), static_cast<long long>(step),
                    static_cast<long long>(cfg_.steps), m["loss"], m["kl_k1"],
                    m["overlap_ratio"], m["rollout_accuracy"], m["tokens_per_second"],
                    format_duration(eta).c_str());
      core::log::info(buf);
    }
    if (cfg_.checkpoint.every > 0 && step % cfg_.checkpoint.every == 0 && step < cfg_.steps)
      save(step);
  }
  // Final evaluation and the stage's summary.
  nlohmann::json summary = {{"stage", cfg_.name}, {"steps", step}};
  if (!eval_examples_.empty()) {
    const double acc = evaluate_accuracy(*student);
    summary["accuracy_student_initial"] = acc_student0;
    summary["accuracy_teacher"] = acc_teacher;
    summary["accuracy_student_final"] = acc;
    summary["gap_recovery"] = std::isfinite(gap_recovery(acc)) ? nlohmann::json(gap_recovery(acc))
                                                               : nlohmann::json(nullptr);
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "%s: accuracy student %.4f -> %.4f, teacher %.4f, gap recovery %.1f%%",
                  cfg_.name.c_str(), acc_student0, acc, acc_teacher, 100 * gap_recovery(acc));
    core::log::info(buf);
  }
  save(step);
  {
    const fs::path results = fs::path(dir_) / "results.json";
    std::ofstream(results.string() + ".tmp") << summary.dump(2) << '\n';
    fs::rename(results.string() + ".tmp", results);
  }
  std::ofstream(fs::path(dir_) / "DONE") << "step " << step << "\n";
  return StageOutcome::Done;
}

}  // namespace opd::distill
