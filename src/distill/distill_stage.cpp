#include "distill/distill_stage.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/rng.hpp"
#include "core/timer.hpp"
#include "data/prompt_template.hpp"
#include "data/sequence.hpp"
#include "distill/distill_update.hpp"
#include "distill/eval_stage.hpp"
#include "distill/metrics_log.hpp"
#include "distill/dp_optimizer.hpp"
#include "distill/model_io.hpp"
#include "distill/remote_teacher.hpp"
#include "distill/progress.hpp"
#include "distill/rollout.hpp"
#include "distill/sample_responses.hpp"
#include "io/checkpoint.hpp"
#include "io/metrics_h5.hpp"
#include "model/optimizer.hpp"

namespace opd::distill {

namespace fs = std::filesystem;
using core::Tensor;

DistillStage::DistillStage(const JobConfig& job, const StageConfig& stage,
                           const data::Tokenizer& tokenizer, const comm::Topology& topo)
    : job_(job), cfg_(stage), tok_(tokenizer), topo_(topo), dir_(stage_dir(job, stage.name)) {}

void DistillStage::prepare() {
  const DistillConfig& dc = cfg_.distill;
  check_objective(dc, cfg_.where);
  if (dc.overlap && !topo_.split())
    input_error(cfg_.where,
                "overlap = 1 lets the teacher ranks score the next batch while the student "
                "updates; with colocated placement there are no teacher ranks to do it",
                "use placement = \"split\" or overlap = 0");
  if (topo_.role() != comm::Role::Teacher && dc.prompts_per_step % topo_.layout().dp != 0)
    input_error(cfg_.where, "prompts_per_step " + std::to_string(dc.prompts_per_step) +
                                " does not split over " + std::to_string(topo_.layout().dp) +
                                " data-parallel ranks",
                "make prompts_per_step a multiple of dp");
  // Student and teacher: both must exist (or be made by earlier stages), share the tokenizer
  // (checked inside model_config_of for checkpoint files) and the vocabulary.
  const model::ModelConfig student = model_config_of(job_, cfg_.model, tok_);
  const model::ModelConfig teacher = model_config_of(job_, dc.teacher, tok_);
  check_model_fits_layout(job_, cfg_.model, tok_, topo_.student_layout(), "student");
  check_model_fits_layout(job_, dc.teacher, tok_, topo_.teacher_layout(), "teacher");
  if (student.vocab_size != teacher.vocab_size)
    input_error(cfg_.where, "the student's vocabulary (" + std::to_string(student.vocab_size) +
                                ") and the teacher's (" + std::to_string(teacher.vocab_size) +
                                ") differ",
                "distil between models of the same tokenizer");
  const std::string teacher_template =
      dc.teacher_template.empty() ? cfg_.prompt_template : dc.teacher_template;
  retemplate_ = teacher_template != cfg_.prompt_template;
  const bool needs_responses = dc.objective.kind == "sft" || dc.objective.gkd_lambda < 1.0;
  const bool needs_answers = dc.objective.reward_weight != 0.0;
  std::vector<std::pair<std::string, double>> sets = {{cfg_.data, dc.data_weight}};
  for (const auto& m : dc.mix) sets.emplace_back(m.data, m.weight);
  pool_.clear();
  teacher_prompts_.clear();
  set_offsets_.clear();
  set_sizes_.clear();
  set_weights_.clear();
  for (const auto& [ref, weight] : sets) {
    const std::string path = resolve_data(job_, ref);
    const auto examples = data::load_jsonl(path);
    set_offsets_.push_back(static_cast<int64_t>(pool_.size()));
    set_sizes_.push_back(static_cast<int64_t>(examples.size()));
    set_weights_.push_back(weight);
    for (std::size_t i = 0; i < examples.size(); ++i) {
      const std::string where = path + ":" + std::to_string(i + 1);
      if (needs_responses && examples[i].response.empty())
        input_error(where, "example has no \"response\"",
                    "objective '" + dc.objective.kind + "' (or gkd_lambda < 1) trains on the data's responses");
      if (needs_answers && examples[i].answer.empty())
        input_error(where, "example has no \"answer\"", "reward_weight needs a reference answer per prompt");
      data::Example ex = examples[i];
      ex.prompt = data::apply_template(cfg_.prompt_template, examples[i].prompt);
      teacher_prompts_.push_back(data::apply_template(teacher_template, examples[i].prompt));
      check_prompt_fits(tok_, ex.prompt, student.max_seq_len, where);
      check_prompt_fits(tok_, teacher_prompts_.back(), teacher.max_seq_len, where);
      pool_.push_back(std::move(ex));
    }
  }
  sampler_.emplace(set_sizes_, set_weights_, job_.run.seed ^ 0x5eedull);
  if (!dc.eval_data.empty()) {
    const std::string path = resolve_data(job_, dc.eval_data);
    const auto examples = data::load_jsonl(path);
    eval_student_.clear();
    eval_teacher_.clear();
    for (std::size_t i = 0; i < examples.size(); ++i) {
      if (examples[i].answer.empty())
        input_error(path + ":" + std::to_string(i + 1), "example has no \"answer\"",
                    "an eval set needs a reference answer per prompt");
      eval_student_.push_back(examples[i]);
      eval_student_.back().prompt = data::apply_template(cfg_.prompt_template, examples[i].prompt);
      eval_teacher_.push_back(examples[i]);
      eval_teacher_.back().prompt = data::apply_template(teacher_template, examples[i].prompt);
    }
  }
}

double DistillStage::evaluate_accuracy(model::Transformer& m,
                                       const std::vector<data::Example>& examples) {
  if (examples.empty()) return std::nan("");
  // Every replica holds the same model: each evaluates a share of the examples.
  return evaluate(m, tok_, examples, cfg_.eval, job_.run.seed ^ 0xe7a1ull, nullptr, 0, &topo_.dp())
      .accuracy;
}

std::vector<int64_t> DistillStage::step_prompts(int64_t step) const {
  const int64_t P = cfg_.distill.prompts_per_step;
  std::vector<int64_t> out;
  for (const auto& [set, i] : sampler_->draws(static_cast<uint64_t>(step * P), P))
    out.push_back(set_offsets_[static_cast<std::size_t>(set)] + i);
  if (!selected_.empty())
    for (auto& i : out) i = selected_[static_cast<std::size_t>(i) % selected_.size()];
  return out;
}

fs::path DistillStage::selection_file() const {
  return fs::path(dir_) / "selected_prompts.json";
}

int64_t DistillStage::selection_candidates() const {
  const DistillConfig& dc = cfg_.distill;
  return dc.select_candidates > 0
             ? std::min<int64_t>(dc.select_candidates, static_cast<int64_t>(pool_.size()))
             : static_cast<int64_t>(pool_.size());
}

std::vector<int64_t> DistillStage::select_prompts(model::Transformer& student,
                                                  TeacherScorer& teacher) {
  const DistillConfig& dc = cfg_.distill;
  const fs::path file = selection_file();
  if (dc.select_fraction >= 1.0) return {};
  if (fs::exists(file)) {  // measured by an earlier run of this stage: the same selection
    std::ifstream in(file);
    return nlohmann::json::parse(in)["selected"].get<std::vector<int64_t>>();
  }
  const int64_t n = selection_candidates();
  std::vector<double> score(static_cast<std::size_t>(n));
  model::SamplingConfig sampling = dc.sampling;
  sampling.record_topk = dc.diag_k;
  DistillConfig probe = dc;
  probe.signal = "topk";
  probe.topk = dc.diag_k;
  const int64_t chunk = dc.prompts_per_step * dc.samples_per_prompt;
  for (int64_t start = 0; start < n; start += chunk) {
    std::vector<int64_t> chosen;
    for (int64_t i = start; i < std::min(n, start + chunk); ++i) chosen.push_back(i);
    RolloutBatch rb = make_rollouts(student, tok_, pool_, chosen, 1, sampling, job_.run.seed,
                                    (uint64_t{1} << 40) + static_cast<uint64_t>(start), cfg_.eval.marker);
    ScoreReply reply = teacher.score(score_request(rb, Signal::TopK));
    const auto overlap = sequence_overlap(student, rb, reply, probe);
    for (std::size_t b = 0; b < chosen.size(); ++b)
      score[static_cast<std::size_t>(chosen[b])] = std::isfinite(overlap[b]) ? overlap[b] : -1.0;
  }
  std::vector<int64_t> order(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return score[static_cast<std::size_t>(a)] > score[static_cast<std::size_t>(b)];
  });
  const auto keep = static_cast<std::size_t>(
      std::max<int64_t>(1, static_cast<int64_t>(std::ceil(dc.select_fraction * static_cast<double>(n)))));
  order.resize(keep);
  std::sort(order.begin(), order.end());
  double kept_mean = 0, all_mean = 0;
  for (int64_t i : order) kept_mean += score[static_cast<std::size_t>(i)];
  for (double x : score) all_mean += x;
  nlohmann::json j = {{"candidates", n}, {"kept", keep}, {"selected", order},
                      {"mean_overlap_all", all_mean / static_cast<double>(n)},
                      {"mean_overlap_kept", kept_mean / static_cast<double>(keep)}};
  if (!topo_.is_root()) return order;  // the other ranks of replica 0 computed the same
  fs::create_directories(dir_);
  std::ofstream(file.string() + ".tmp") << j.dump() << '\n';
  fs::rename(file.string() + ".tmp", file);
  core::log::info(cfg_.name, ": prompt selection kept ", keep, " of ", n,
                  " prompts (mean initial overlap ", j["mean_overlap_kept"].get<double>(),
                  " against ", j["mean_overlap_all"].get<double>(), ")");
  return order;
}

ScoreRequest DistillStage::score_request(const RolloutBatch& rb, Signal mode) const {
  ScoreRequest req;
  req.mode = mode;
  req.targets = Tensor::from_vector(rb.targets, {rb.num_rows()});
  if (retemplate_) {
    std::vector<std::string> prompts;
    for (int32_t e : rb.example) prompts.push_back(teacher_prompts_[static_cast<std::size_t>(e)]);
    Relayout r = relayout(rb, tok_, prompts);
    req.ids = r.ids;
    req.rows = Tensor::from_vector(r.rows, {rb.num_rows()});
  } else {
    req.ids = rb.ids;
    req.rows = Tensor::from_vector(rb.rows, {rb.num_rows()});
  }
  if (mode != Signal::Sampled) req.student_ids = Tensor::from_vector(rb.topk, {rb.num_rows(), rb.k});
  return req;
}

StageOutcome DistillStage::run(StopCondition& stop) {
  const DistillConfig& dc = cfg_.distill;
  const fs::path ckdir_path = fs::path(dir_) / "checkpoints";
  fs::create_directories(ckdir_path);
  io::CheckpointDir ckdir(ckdir_path.string());

  if (topo_.role() == comm::Role::Teacher) return serve(stop);
  // The teacher's identity (its weights' content hash), recorded in every checkpoint: resuming
  // against another teacher would silently mix two distillations.
  const std::string teacher_path = resolve_checkpoint(job_, dc.teacher);
  const std::string teacher_hash = [&] {
    io::CheckpointReader tr(teacher_path);
    return model_content_hash(tr);
  }();
  if (const std::optional<std::string> last = ckdir.latest_path()) {
    io::CheckpointReader r(*last);
    const std::string was = r.read_string("teacher/path");
    // By content; a checkpoint from before content hashes were recorded, by path.
    const bool changed = r.has("teacher/hash") ? r.read_string("teacher/hash") != teacher_hash
                                               : was != teacher_path;
    if (changed) {
      if (!dc.allow_teacher_change)
        input_error(*last, "this stage was distilled from the teacher " + was +
                               ", but the job's teacher " + teacher_path +
                               " has other weights (content hash " + teacher_hash.substr(0, 16) + "...)",
                    "point the stage's teacher at the original, or resume with the new teacher on "
                    "purpose: --set stage." + cfg_.name + ".allow_teacher_change=true");
      core::log::info(cfg_.name, ": resuming with a different teacher (", teacher_path,
                      "; was ", was, "), as allow_teacher_change asks");
    }
  }
  core::PhaseTimers phases;
  // The teacher: on this rank (colocated), or on the teacher ranks (split placement).
  std::unique_ptr<TeacherScorer> teacher_ptr;
  LocalTeacher* local_teacher = nullptr;
  RemoteTeacher* remote = nullptr;
  if (topo_.split()) {
    teacher_ptr = std::make_unique<RemoteTeacher>(
        topo_.world(), topo_.teacher_of(topo_.dp_rank()), topo_.teacher_reply_rank(topo_.dp_rank()),
        topo_.tp(),
        model_config_of(job_, dc.teacher, tok_), static_cast<float>(dc.teacher_temperature),
        dc.signal == "full", unsharded_on(job_.run).device);
    remote = static_cast<RemoteTeacher*>(teacher_ptr.get());
  } else {
    auto lt = std::make_unique<LocalTeacher>(load_model(resolve_checkpoint(job_, dc.teacher),
                                                        tok_.describe(), model_parallel_of(topo_, job_.run)),
                                             static_cast<float>(dc.teacher_temperature),
                                             cfg_.vocab_chunk, dc.rows_per_block);
    local_teacher = lt.get();
    teacher_ptr = std::move(lt);
  }
  TeacherScorer& teacher = *teacher_ptr;
  const bool remote_overlap = remote != nullptr && dc.overlap;
  std::optional<RolloutBatch> inflight;  // overlap: the batch the teacher is scoring

  std::unique_ptr<model::Transformer> student;
  int64_t step = 0, tokens_seen = 0;
  double acc_student0 = std::nan(""), acc_teacher = std::nan("");
  std::optional<std::string> resume = ckdir.latest_path();
  if (resume) {
    io::CheckpointReader r(*resume);
    check_tokenizer(r, tok_.describe());
    student = std::make_unique<model::Transformer>(read_model_config(r), model_parallel_of(topo_, job_.run));
    read_model_weights(r, *student);
    step = r.read_int("state/step");
    tokens_seen = r.read_int("state/tokens_seen");
    acc_student0 = r.read_double("state/accuracy_student_initial");
    acc_teacher = r.read_double("state/accuracy_teacher");
    if (remote && dc.overlap && r.has("state/inflight/count")) {
      if (r.read_int("state/inflight/count") == topo_.dp().size())
        inflight = rollout_from_json(r.read_string("state/inflight/" + std::to_string(topo_.dp_rank())));
      else
        core::log::info(cfg_.name, ": the batch in flight was sampled on another number of "
                                   "data-parallel ranks; sampling a new one");
    }
    core::log::info(cfg_.name, ": resuming from ", *resume, " at step ", step);
  } else {
    student = initial_model(job_, cfg_.model, tok_, model_parallel_of(topo_, job_.run));
  }
  if (student->config().vocab_size != teacher.config().vocab_size)
    input_error(cfg_.where, "the student's and the teacher's vocabularies differ",
                "distil between models of the same tokenizer");
  DataParallelOptimizer opt(*student, topo_.dp(), job_.parallel.zero != 0);
  if (resume) {
    io::CheckpointReader r(*resume);
    opt.read(r);
  } else if (!eval_student_.empty()) {
    core::ScopedPhase p(phases, "eval");
    acc_student0 = evaluate_accuracy(*student, eval_student_);
    if (local_teacher) {
      acc_teacher = evaluate_accuracy(local_teacher->model(), eval_teacher_);
    } else {  // the teacher ranks measure it
      topo_.world().broadcast(&acc_teacher, sizeof acc_teacher, topo_.teacher_root());
    }
  }
  {
    // The root measures (or reads back) the selection; every rank gets the same indices.
    std::vector<int64_t> sel;
    // Replica 0 scores (all its ranks take part; its teacher is local or remote), then shares
    // the choice with the others.
    if (topo_.dp_rank() == 0) sel = select_prompts(*student, teacher);
    int64_t n = static_cast<int64_t>(sel.size());
    topo_.dp().broadcast(&n, sizeof n, 0);
    sel.resize(static_cast<std::size_t>(n));
    topo_.dp().broadcast(sel.data(), n * static_cast<int64_t>(sizeof(int64_t)), 0);
    selected_ = std::move(sel);
  }
  if (!eval_student_.empty())
    core::log::info(cfg_.name, ": accuracy before distillation: student ", acc_student0,
                    ", teacher ", acc_teacher);

  const auto gap_recovery = [&](double acc) {
    return (acc - acc_student0) / (acc_teacher - acc_student0);
  };
  int64_t saved_at = -1;  // the step of the last checkpoint written by this run
  auto save = [&](int64_t at) {
    saved_at = at;
    // The replicas are identical: the tp ranks of replica 0 write (each its shards); with ZeRO-1
    // the other replicas send them the optimizer moments they own.
    core::ScopedPhase p(phases, "checkpoint");
    const bool root = topo_.is_root(), writer = topo_.dp_rank() == 0;
    core::Stopwatch clock;
    // Overlap: every data-parallel rank's batch in flight, for an exact resume.
    const std::vector<std::string> in_flight =
        inflight ? topo_.dp().gather(rollout_to_json(*inflight), 0) : std::vector<std::string>();
    std::optional<io::CheckpointWriter> w;
    if (writer) {
      w.emplace(ckdir.path_for_step(at), checkpoint_comm(topo_));
      write_model(*w, *student, tok_.describe());
    }
    opt.write(writer ? &*w : nullptr, model::parameter_specs(student->config()));
    if (writer) {
      w->write_int("state/step", at);
      w->write_int("state/tokens_seen", tokens_seen);
      w->write_double("state/accuracy_student_initial", acc_student0);
      w->write_double("state/accuracy_teacher", acc_teacher);
      w->write_string("teacher/path", teacher_path);
      w->write_string("teacher/hash", teacher_hash);
      w->write_string("teacher/tokenizer", tok_.describe());
      if (!in_flight.empty()) {
        w->write_int("state/inflight/count", static_cast<int64_t>(in_flight.size()));
        for (std::size_t d = 0; d < in_flight.size(); ++d)
          w->write_string("state/inflight/" + std::to_string(d), in_flight[d]);
      }
      w->write_string("config/job_toml", job_.toml_text);
      w->write_string("config/stage", cfg_.name);
      w->set_attribute("layout", topo_.describe());
      w->commit();
    }
    if (root) {
      log_checkpoint_io(cfg_.name, ckdir.path_for_step(at), "written", clock.seconds());
      ckdir.publish(at);
      ckdir.prune(cfg_.checkpoint.keep_last, cfg_.checkpoint.keep_every);
    }
    topo_.group().barrier();  // the student group
  };


  std::optional<MetricsLog> jsonl;
  std::optional<io::MetricsH5> h5;
  if (topo_.is_root()) {
    jsonl.emplace((fs::path(dir_) / "metrics.jsonl").string(), resume ? step : -1);
    h5.emplace((fs::path(dir_) / "metrics.h5").string(), resume ? step : -1);
  }
  const comm::Communicator& dp = topo_.dp();
  const int64_t local_prompts = dc.prompts_per_step / dp.size();
  model::SamplingConfig sampling = dc.sampling;
  if (dc.signal != "sampled") sampling.record_topk = dc.topk;
  else if (dc.diag_k > 0) sampling.record_topk = 0;
  const Signal mode = signal_mode(dc.signal);
  const int64_t per_step = dc.prompts_per_step * dc.samples_per_prompt;
  core::log::info(cfg_.name, ": distilling a ", student->params().global_numel(), "-parameter student from a ",
                  teacher.config().parameter_count(), "-parameter teacher, objective ",
                  dc.objective.kind, ", signal ", dc.signal, ", ", cfg_.steps, " steps of ",
                  per_step, " rollouts");
  // This rank's batch of a step: its share of the step's prompts, sampled by the student (the
  // rollouts keep their global stream ids, so the sampled tokens do not depend on the number of
  // ranks) or, on the off-policy share of GKD steps, the dataset's own responses.
  auto make_batch = [&](int64_t at) {
    core::ScopedPhase p(phases, "rollout");
    const std::vector<int64_t> all = step_prompts(at);
    const auto first = static_cast<std::ptrdiff_t>(topo_.dp_rank() * local_prompts);
    const std::vector<int64_t> chosen(all.begin() + first, all.begin() + first + local_prompts);
    const auto stream_base = static_cast<uint64_t>(
        at * per_step + topo_.dp_rank() * local_prompts * dc.samples_per_prompt);
    core::RngStream coin(job_.run.seed, core::RngPurpose::Data, static_cast<uint64_t>(at));
    const bool on_policy =
        dc.objective.kind != "sft" && coin.uniform_double() < dc.objective.gkd_lambda;
    RolloutBatch rb = on_policy ? make_rollouts(*student, tok_, pool_, chosen, dc.samples_per_prompt,
                                                sampling, job_.run.seed, stream_base,
                                                cfg_.eval.marker)
                                : make_fixed_batch(tok_, pool_, chosen,
                                                   student->config().max_seq_len, cfg_.eval.marker);
    if (mode != Signal::Sampled && !rb.on_policy) {  // the student's top-k from a scoring pass
      rb.k = dc.topk;
      rb.topk = student_topk(*student, rb, dc.topk, dc.rows_per_block);
    }
    return rb;
  };
  // Overlap: the first batch goes to the teacher before the loop (a resumed run sends the one
  // that was in flight when it stopped).
  if (remote_overlap && step < cfg_.steps) {
    if (!inflight) inflight = make_batch(step);
    remote->send_request(score_request(*inflight, mode));
  }
  core::Stopwatch wall;
  const int64_t first_step = step;
  double last_acc = std::nan("");
  while (step < cfg_.steps) {
    // Every rank must agree to stop at the same boundary (a signal may reach only some).
    if (step > first_step && topo_.world().allreduce_max(stop.should_stop(step) ? 1 : 0)) {
      // Overlap: the teacher has answered the batch in flight; the reply is dropped (a resume
      // sends the batch again) and the batch goes into the checkpoint.
      if (remote_overlap) (void)remote->receive_reply(score_request(*inflight, mode));
      if (saved_at != step) save(step);  // else just written, with the same state
      core::log::info(cfg_.name, ": stopping at step ", step, " (", stop.reason().empty() ? std::string("another rank was told to stop") : stop.reason(),
                      "); checkpoint written, resubmit to continue");
      return StageOutcome::Interrupted;
    }
    core::Stopwatch step_clock;
    const double comm_at_start = comm::mpi_seconds();
    // The batch to learn from and the teacher's reply: scored now, or (overlap) scored while
    // the previous update ran, with the next batch sent off before this one's reply is taken.
    RolloutBatch rb;
    ScoreReply reply;
    if (!remote_overlap) {
      rb = make_batch(step);
      core::ScopedPhase p(phases, "teacher");
      // A remote teacher expects one request per step, even an empty one.
      if (rb.num_rows() > 0 || topo_.split()) reply = teacher.score(score_request(rb, mode));
    } else {
      rb = std::move(*inflight);
      inflight.reset();
      if (step + 1 < cfg_.steps) {
        inflight = make_batch(step + 1);
        remote->send_request(score_request(*inflight, mode));
      }
      core::ScopedPhase p(phases, "teacher");
      reply = remote->receive_reply(score_request(rb, mode));
    }
    const bool on_policy = rb.on_policy;
    StepMetrics m;
    double gnorm = 0;
    const double lr = model::scheduled_lr(cfg_.optim, step, cfg_.steps);
    {
      core::ScopedPhase p(phases, "update");
      student->params().zero_grad();
      m = distill_backward(*student, rb, reply, dc, dp, micro_batches_of(job_, topo_));
      gnorm = opt.step(cfg_.optim, lr);
    }
    ++step;
    tokens_seen += static_cast<int64_t>(m["response_tokens"]);
    if (dc.eval_every > 0 && step % dc.eval_every == 0 && step < cfg_.steps) {
      core::ScopedPhase p(phases, "eval");
      last_acc = evaluate_accuracy(*student, eval_student_);
      m["eval_accuracy"] = last_acc;
      m["gap_recovery"] = gap_recovery(last_acc);
    }
    const double secs = step_clock.seconds();
    m["step"] = static_cast<double>(step);
    m["lr"] = lr;
    m["grad_norm"] = gnorm;
    m["on_policy"] = on_policy;
    m["tokens_per_second"] = m["response_tokens"] / secs;
    for (const auto& [name, s] : phases.take()) m["time_" + name] = s;
    // Every collective and transfer of the step (data-, tensor- and pipeline-parallel, teacher
    // traffic), waiting for the other ranks included; it overlaps the phases above.
    m["time_comm"] = comm::mpi_seconds() - comm_at_start;
    nlohmann::json rec;
    std::vector<std::pair<std::string, double>> row;
    for (const auto& [k, v] : m) {
      rec[k] = std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
      if (k != "step") row.emplace_back(k, v);
    }
    rec["step"] = step;
    if (jsonl) jsonl->write(rec);
    if (h5) h5->append(step, row);
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
  if (!eval_student_.empty()) {
    const double acc = evaluate_accuracy(*student, eval_student_);
    summary["accuracy_student_initial"] = acc_student0;
    summary["accuracy_teacher"] = acc_teacher;
    summary["accuracy_student_final"] = acc;
    summary["gap_recovery"] = std::isfinite(gap_recovery(acc)) ? nlohmann::json(gap_recovery(acc))
                                                               : nlohmann::json(nullptr);
    char buf[256], gap[64] = "undefined (the teacher is no better than the initial student)";
    if (std::isfinite(gap_recovery(acc))) std::snprintf(gap, sizeof gap, "%.1f%%", 100 * gap_recovery(acc));
    std::snprintf(buf, sizeof buf, "%s: accuracy student %.4f -> %.4f, teacher %.4f, gap recovery %s",
                  cfg_.name.c_str(), acc_student0, acc, acc_teacher, gap);
    core::log::info(buf);
  }
  save(step);
  if (topo_.is_root()) {
    const fs::path results = fs::path(dir_) / "results.json";
    std::ofstream(results.string() + ".tmp") << summary.dump(2) << '\n';
    fs::rename(results.string() + ".tmp", results);
    std::ofstream(fs::path(dir_) / "DONE") << "step " << step << "\n";
  }
  return StageOutcome::Done;
}

StageOutcome DistillStage::serve(StopCondition& stop) {
  const DistillConfig& dc = cfg_.distill;
  LocalTeacher teacher(load_model(resolve_checkpoint(job_, dc.teacher), tok_.describe(),
                                  model_parallel_of(topo_, job_.run)),
                       static_cast<float>(dc.teacher_temperature), cfg_.vocab_chunk,
                       dc.rows_per_block);
  const comm::Communicator& world = topo_.world();
  const std::vector<int> clients = topo_.clients();
  // The students' view of the run: where it resumes (they read the same checkpoint directory).
  io::CheckpointDir ckdir((fs::path(dir_) / "checkpoints").string());
  const std::optional<std::string> resume = ckdir.latest_path();
  int64_t step = 0;
  if (resume) step = io::CheckpointReader(*resume).read_int("state/step");
  const int64_t first_step = step;
  // The same order of exchanges as the student side: the head, the teacher's accuracy, then one
  // request per client per step with the stop agreement in between.
  if (dc.signal == "full")
    for (int c : clients) send_teacher_head(teacher, world, c);
  if (!resume && !eval_teacher_.empty()) {
    double acc = evaluate(teacher.model(), tok_, eval_teacher_, cfg_.eval, job_.run.seed ^ 0xe7a1ull,
                          nullptr, 0, &topo_.dp())
                     .accuracy;
    world.broadcast(&acc, sizeof acc, topo_.teacher_root());
  }
  // Prompt selection (split placement): student replica 0 sends one request per chunk of
  // candidates, unless an earlier run of this stage measured it (both sides see the file).
  const std::vector<int> served = clients;
  if (dc.select_fraction < 1.0 && !fs::exists(selection_file()) &&
      std::find(served.begin(), served.end(), 0) != served.end()) {
    const int64_t chunk = dc.prompts_per_step * dc.samples_per_prompt;
    for (int64_t start = 0; start < selection_candidates(); start += chunk)
      serve_score_request(teacher, world, topo_.replica(), 0);
  }
  // Overlap: one request ahead — the batch of the first step before the loop, then in step k
  // the batch of step k + 1 (while the students update on batch k).
  const int ahead = dc.overlap ? 1 : 0;
  if (ahead && step < cfg_.steps)
    for (int c : clients) serve_score_request(teacher, world, topo_.replica(), c);
  while (step < cfg_.steps) {
    if (step > first_step && world.allreduce_max(stop.should_stop(step) ? 1 : 0))
      return StageOutcome::Interrupted;
    if (step + ahead < cfg_.steps)
      for (int c : clients) serve_score_request(teacher, world, topo_.replica(), c);
    ++step;
  }
  return StageOutcome::Done;
}

}  // namespace opd::distill
