// `opd bench train|score|decode`: whole-step throughput of this machine, stated against ceilings
// measured in the same process with the same library settings (sgemm rate, memory bandwidth).
// Figures are printed and, with --json FILE, written as one JSON object.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "app/bench_ceilings.hpp"
#include "core/error.hpp"
#include "app/commands.hpp"
#include "comm/device_group.hpp"
#include "backend/ops.hpp"
#include "backend/recording.hpp"
#include "core/timer.hpp"
#include "distill/teacher.hpp"
#include "model/generator.hpp"
#include "model/lm_loss.hpp"
#include "model/optimizer.hpp"
#include "model/transformer.hpp"

namespace opd::app {

namespace {

using core::Tensor;
namespace ops = opd::backend;

struct BenchArgs {
  model::ModelConfig model;
  int64_t batch = 4, seq = 256, steps = 3, warmup = 1;
  std::vector<int> threads{1};
  std::vector<int64_t> decode_batches{1, 16};
  int64_t prompt = 16, new_tokens = 32;
  std::string json;
  std::string device = "cpu";  // cpu | cuda
  std::string precision = "fp32";  // fp32 | bf16 (mixed precision: bf16 GEMMs, f32 masters)
  double peak_tflops = 0;  // the MFU denominator; 0: the card's datasheet bf16 figure
};

core::DType compute_dtype(const BenchArgs& a) {
  return a.precision == "bf16" ? core::DType::BF16 : core::DType::F32;
}

// The GPU's name and dense bf16 peak (TFLOP/s; --peak-tflops overrides the table).
std::pair<std::string, double> gpu_peak(const BenchArgs& a) {
  const std::string name = ops::cuda_device_name();
  return {name, a.peak_tflops > 0 ? a.peak_tflops : dense_bf16_peak_tflops(name)};
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

// Activation bytes a training step keeps (see Transformer::ensure_slot): per layer the residual
// stream, norms' rstd, q/k/v, the attention lse, gate/up, and the GEMM inputs (both normed inputs,
// the attention output and the SwiGLU output), which are bf16 in mixed precision.
double activation_mib(const model::ModelConfig& c, int64_t B, int64_t T, core::DType compute) {
  const double N = static_cast<double>(B * T);
  const double gemm_inputs = N * (2.0 * c.d_model + c.q_size() + c.d_ff);
  const double f32_per_layer = N * (2.0 * c.d_model + 2 + c.q_size() + 2.0 * c.kv_size() + 2.0 * c.d_ff) +
                               static_cast<double>(B * c.n_heads * T);  // attention lse
  const double input_bytes = compute == core::DType::BF16 ? 2.0 : 4.0;
  const double workspace = N * (3.0 * c.d_model + 2.0 * c.q_size() + 2.0 * c.kv_size() + 3.0 * c.d_ff);
  return (c.n_layers * (4.0 * f32_per_layer + input_bytes * gemm_inputs) +
          4.0 * (workspace + N * (2.0 * c.d_model + 4))) / (1 << 20);
}

// A fixed batch of B x T token ids and next-token targets spread over the vocabulary (the
// benchmarks measure arithmetic, not learning): ids [B, T] and targets [B, T], host I32.
struct SyntheticBatch {
  Tensor ids, targets;
};
SyntheticBatch synthetic_batch(int64_t B, int64_t T, int64_t vocab) {
  std::vector<int32_t> ids(static_cast<std::size_t>(B * T)), tg(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    ids[i] = static_cast<int32_t>((i * 7919) % static_cast<std::size_t>(vocab));
    tg[i] = static_cast<int32_t>((i * 104729 + 1) % static_cast<std::size_t>(vocab));
  }
  return {Tensor::from_vector(ids, {B, T}), Tensor::from_vector(tg, {B, T})};
}

nlohmann::json bench_train(const BenchArgs& a, int threads) {
  ops::set_blas_threads(threads);
  const bool gpu = a.device == "cuda";
  if (gpu && comm::use_local_cuda_device() < 0)
    input_error("bench train --device cuda", "no CUDA device (or opd was built without CUDA)",
                "run on a GPU machine, or use --device cpu");
  const core::Device dev = gpu ? core::Device::Cuda : core::Device::Host;
  // The GEMM ceiling of the same device and operand precision, measured in this run.
  const core::DType cdt = compute_dtype(a);
  const double sgemm = gpu ? measure_device_gemm_gflops(8192, cdt) : measure_sgemm_gflops();
  model::Transformer m(a.model, {}, {}, dev);
  m.init_weights(1);
  m.set_compute_dtype(cdt);
  model::AdamW opt(m.params());
  model::OptimConfig oc;
  const SyntheticBatch batch = synthetic_batch(a.batch, a.seq, a.model.vocab_size);
  const Tensor& tid = batch.ids;
  const Tensor& ttg = batch.targets;
  Tensor pos = model::causal_positions(a.batch, a.seq);
  double total = 0, fwd_bwd = 0;
  for (int64_t s = 0; s < a.warmup + a.steps; ++s) {
    core::Stopwatch t;
    m.params().zero_grad();
    model::lm_cross_entropy(m, tid, pos, ttg, 1.0f / static_cast<float>(a.batch * a.seq));
    const double fb = t.seconds();
    opt.step(m.params(), oc, 1e-4);
    ops::synchronize(dev);
    if (s >= a.warmup) {
      total += t.seconds();
      fwd_bwd += fb;
    }
  }
  const double step_s = total / static_cast<double>(a.steps);
  const double tokens = static_cast<double>(a.batch * a.seq);
  const double flops = m.config().train_flops_per_token(a.seq) * tokens;
  const double gflops = flops / step_s / 1e9;
  // Master weights, gradients and AdamW moments in f32, plus the bf16 compute copies.
  const double state_mib =
      (16.0 + (cdt == core::DType::BF16 ? 2.0 : 0.0)) * static_cast<double>(m.params().numel()) / (1 << 20);
  const auto [gpu_name, peak] = gpu ? gpu_peak(a) : std::pair<std::string, double>{"", 0.0};
  const double mfu = peak > 0 ? gflops / (peak * 1e3) : 0.0;
  nlohmann::json j = {{"mode", "train"},
                      {"device", a.device},
                      {"precision", a.precision},
                      {"gpu", gpu_name},
                      {"bf16_peak_tflops", peak},
                      {"mfu", mfu},
                      {"threads", threads},
                      {"params", m.params().numel()},
                      {"batch", a.batch},
                      {"seq", a.seq},
                      {"step_seconds", step_s},
                      {"fwd_bwd_seconds", fwd_bwd / static_cast<double>(a.steps)},
                      {"tokens_per_second", tokens / step_s},
                      {"achieved_gflops", gflops},
                      {"sgemm_gflops", sgemm},
                      {"fraction_of_sgemm", gflops / sgemm},
                      {"peak_rss_mib", peak_rss_mib()},
                      {"estimate_mib",
                       {{"params_grads_adamw", state_mib},
                        {"activations", activation_mib(m.config(), a.batch, a.seq, cdt)}}}};
  std::printf(
      "train  %s %s threads %d: %.3f s/step, %.0f tok/s, %.1f GFLOP/s = %.1f%% of %s %.1f GFLOP/s; "
      "peak RSS %.0f MiB (params+grads+AdamW %.0f MiB, activations ~%.0f MiB)\n",
      a.device.c_str(), a.precision.c_str(), threads, step_s, tokens / step_s, gflops,
      100 * gflops / sgemm,
      gpu ? (cdt == core::DType::BF16 ? "cuBLASLt bf16 GEMM" : "cuBLASLt sgemm") : "sgemm", sgemm,
      peak_rss_mib(), state_mib, activation_mib(m.config(), a.batch, a.seq, cdt));
  if (gpu)
    std::printf("train  %s: MFU %.1f%% of the %s dense bf16 peak %.0f TFLOP/s\n", a.device.c_str(),
                100 * mfu, gpu_name.c_str(), peak);
  return j;
}

nlohmann::json bench_decode(const BenchArgs& a, int threads) {
  ops::set_blas_threads(threads);
  const bool gpu = a.device == "cuda";
  if (gpu && comm::use_local_cuda_device() < 0)
    input_error("bench decode --device cuda", "no CUDA device (or opd was built without CUDA)",
                "run on a GPU machine, or use --device cpu");
  // The memory bandwidth of the device the weights live on, measured in this run.
  const double bw = gpu ? measure_device_copy_gbs() : measure_read_bandwidth(threads);
  model::Transformer m(a.model, {}, {}, gpu ? core::Device::Cuda : core::Device::Host);
  m.init_weights(1);
  m.set_compute_dtype(compute_dtype(a));
  const auto& c = m.config();
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t B : a.decode_batches) {
    std::vector<std::vector<int32_t>> prompts(static_cast<std::size_t>(B));
    std::vector<uint64_t> streams;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < a.prompt; ++t)
        prompts[static_cast<std::size_t>(b)].push_back(static_cast<int32_t>((b * 31 + t * 7) % c.vocab_size));
      streams.push_back(static_cast<uint64_t>(b));
    }
    model::SamplingConfig sc;
    sc.temperature = 1.0f;
    sc.max_new_tokens = a.new_tokens;
    // EOS id -1: no sequence stops early, every step decodes the whole batch.
    model::generate(m, prompts, sc, 1, streams, -1);  // warm-up
    auto timed = [&](int64_t& produced) {
      ops::synchronize(m.device());
      core::Stopwatch t;
      auto gens = model::generate(m, prompts, sc, 1, streams, -1);
      ops::synchronize(m.device());
      produced = 0;
      for (const auto& g : gens) produced += static_cast<int64_t>(g.tokens.size());
      return t.seconds();
    };
    int64_t produced = 0;
    const double secs = timed(produced);
    // On a GPU also op by op, without the recorded decode steps (CUDA graphs).
    double plain_tps = 0.0;
    if (gpu && ops::Recording::enabled()) {
      ops::Recording::set_enabled(false);
      int64_t n = 0;
      plain_tps = static_cast<double>(n) / timed(n);
      ops::Recording::set_enabled(true);
    }
    // Bytes one decode step must read: every weight except the embedding table (only B rows of
    // it are gathered), the LM head, and the KV cache (f32) at the mean context length. The
    // GEMMs read their weights in the compute precision (2 bytes in bf16).
    const double wbytes = compute_dtype(a) == core::DType::BF16 ? 2.0 : 4.0;
    double weights = wbytes * static_cast<double>(m.params().numel() - c.vocab_size * c.d_model);
    if (c.tie_embeddings) weights += wbytes * static_cast<double>(c.vocab_size * c.d_model);
    const double mean_ctx = static_cast<double>(a.prompt) + static_cast<double>(a.new_tokens) / 2;
    const double kv = 4.0 * 2 * c.n_layers * static_cast<double>(B) * mean_ctx * c.kv_size();
    const double roofline = static_cast<double>(B) * bw * 1e9 / (weights + kv);
    const double tps = static_cast<double>(produced) / secs;
    std::printf("decode %s %s threads %d batch %lld: %.1f tok/s, roofline %.1f tok/s (%.1f GB/s), %.1f%%\n",
                a.device.c_str(), a.precision.c_str(), threads, static_cast<long long>(B), tps, roofline, bw,
                100 * tps / roofline);
    if (plain_tps > 0)
      std::printf("decode %s %s batch %lld without CUDA graphs: %.1f tok/s, %.1f%%\n", a.device.c_str(),
                  a.precision.c_str(), static_cast<long long>(B), plain_tps, 100 * plain_tps / roofline);
    nlohmann::json row = {{"batch", B},
                          {"tokens_per_second", tps},
                          {"roofline_tokens_per_second", roofline},
                          {"fraction_of_roofline", tps / roofline}};
    if (plain_tps > 0) row["tokens_per_second_without_graphs"] = plain_tps;
    rows.push_back(row);
  }
  return {{"mode", "decode"}, {"device", a.device}, {"precision", a.precision},
          {"gpu", ops::cuda_device_name()}, {"threads", threads}, {"read_bandwidth_gbs", bw},
          {"prompt", a.prompt}, {"new_tokens", a.new_tokens}, {"params", m.params().numel()},
          {"batches", rows}};
}

// Teacher scoring: one prefill forward over prompt + response and the chunked head at every
// position (log q(y), log-sum-exp, entropy), the work a teacher does per distillation step.
nlohmann::json bench_score(const BenchArgs& a, int threads) {
  ops::set_blas_threads(threads);
  const double sgemm = measure_sgemm_gflops();
  distill::LocalTeacher teacher(std::make_unique<model::Transformer>(a.model), 1.0f);
  teacher.model().init_weights(1);
  teacher.model().set_compute_dtype(compute_dtype(a));
  const int64_t N = a.batch * a.seq;
  const SyntheticBatch batch = synthetic_batch(a.batch, a.seq, a.model.vocab_size);
  std::vector<int32_t> rows(static_cast<std::size_t>(N));
  for (int64_t i = 0; i < N; ++i) rows[static_cast<std::size_t>(i)] = static_cast<int32_t>(i);
  distill::ScoreRequest req;
  req.ids = batch.ids;
  req.rows = Tensor::from_vector(rows, {N});
  req.targets = batch.targets.view({N});
  req.mode = backend::Signal::Sampled;
  double total = 0;
  for (int64_t s = 0; s < a.warmup + a.steps; ++s) {
    core::Stopwatch t;
    teacher.score(req);
    if (s >= a.warmup) total += t.seconds();
  }
  const double secs = total / static_cast<double>(a.steps);
  // Forward FLOPs: a third of the training step's matmul work (2 per multiply-add), plus the
  // attention forward.
  const double flops_per_token = a.model.train_flops_per_token(a.seq) / 3.0;
  const double gflops = flops_per_token * static_cast<double>(N) / secs / 1e9;
  std::printf("score  threads %d: %.3f s per %lld-token batch, %.0f tok/s, %.1f GFLOP/s = %.1f%% of sgemm %.1f GFLOP/s\n",
              threads, secs, static_cast<long long>(N), static_cast<double>(N) / secs, gflops,
              100 * gflops / sgemm, sgemm);
  return {{"mode", "score"},         {"threads", threads},       {"batch", a.batch},
          {"seq", a.seq},            {"seconds", secs},          {"tokens_per_second", N / secs},
          {"achieved_gflops", gflops}, {"sgemm_gflops", sgemm},  {"fraction_of_sgemm", gflops / sgemm}};
}

// Teacher scoring on the GPU: the prefill forward of the whole batch and the vocab-chunked head
// statistics at every position (log-sum-exp, target logit, entropy), in the compute precision.
nlohmann::json bench_score_device(const BenchArgs& a) {
  if (comm::use_local_cuda_device() < 0)
    input_error("bench score --device cuda", "no CUDA device (or opd was built without CUDA)",
                "run on a GPU machine, or use --device cpu");
  const core::Device dev = core::Device::Cuda;
  const core::DType cdt = compute_dtype(a);
  const double gemm = measure_device_gemm_gflops(8192, cdt);
  model::Transformer m(a.model, {}, {}, dev);
  m.init_weights(1);
  m.set_compute_dtype(cdt);
  const int64_t N = a.batch * a.seq;
  const SyntheticBatch batch = synthetic_batch(a.batch, a.seq, a.model.vocab_size);
  const Tensor& tid = batch.ids;
  const Tensor pos = model::causal_positions(a.batch, a.seq);
  const Tensor targets = ops::on_device(batch.targets.view({N}), dev);
  ops::HeadStats stats;
  for (Tensor* t : {&stats.lse, &stats.target_logit, &stats.entropy})
    *t = Tensor::empty({N}, core::DType::F32, dev);
  double total = 0;
  for (int64_t s = 0; s < a.warmup + a.steps; ++s) {
    core::Stopwatch t;
    const Tensor& h = m.forward(tid, pos, false);
    m.head_stats(h, &targets, 8192, stats);
    ops::synchronize(dev);
    if (s >= a.warmup) total += t.seconds();
  }
  const double secs = total / static_cast<double>(a.steps);
  const double gflops = a.model.train_flops_per_token(a.seq) / 3.0 * static_cast<double>(N) / secs / 1e9;
  const auto [name, peak] = gpu_peak(a);
  const double mfu = peak > 0 ? gflops / (peak * 1e3) : 0.0;
  std::printf("score  cuda %s: %.4f s per %lld-token batch, %.0f tok/s, %.1f GFLOP/s = %.1f%% of the "
              "%s GEMM %.1f GFLOP/s; MFU %.1f%% of %s %.0f TFLOP/s\n",
              a.precision.c_str(), secs, static_cast<long long>(N), static_cast<double>(N) / secs,
              gflops, 100 * gflops / gemm, a.precision.c_str(), gemm, 100 * mfu, name.c_str(), peak);
  return {{"mode", "score"}, {"device", "cuda"}, {"precision", a.precision}, {"gpu", name},
          {"batch", a.batch}, {"seq", a.seq}, {"seconds", secs}, {"tokens_per_second", N / secs},
          {"achieved_gflops", gflops}, {"gemm_gflops", gemm}, {"fraction_of_gemm", gflops / gemm},
          {"bf16_peak_tflops", peak}, {"mfu", mfu}};
}

void add_device_options(CLI::App* cmd, BenchArgs& a) {
  cmd->add_option("--device", a.device, "cpu, or cuda (the first GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--precision", a.precision,
                  "fp32, or bf16 (mixed precision: bf16 GEMMs with f32 accumulation and masters)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--peak-tflops", a.peak_tflops,
                  "The GPU's dense bf16 peak for MFU (default: the datasheet figure of known cards)");
}

void add_model_options(CLI::App* cmd, BenchArgs& a) {
  // Default: a GPT-2-124M-shaped model of this architecture.
  a.model.vocab_size = 50304;
  a.model.d_model = 768;
  a.model.n_layers = 12;
  a.model.n_heads = 12;
  a.model.n_kv_heads = 12;
  a.model.d_ff = 2048;
  a.model.max_seq_len = 1024;
  a.model.tie_embeddings = true;
  cmd->add_option("--vocab", a.model.vocab_size)->capture_default_str();
  cmd->add_option("--d-model", a.model.d_model)->capture_default_str();
  cmd->add_option("--layers", a.model.n_layers)->capture_default_str();
  cmd->add_option("--heads", a.model.n_heads)->capture_default_str();
  cmd->add_option("--kv-heads", a.model.n_kv_heads)->capture_default_str();
  cmd->add_option("--ff", a.model.d_ff)->capture_default_str();
  cmd->add_option("--threads", a.threads, "BLAS thread counts to run, e.g. 1 2")->capture_default_str();
  cmd->add_option("--json", a.json, "Write the figures as one JSON object to FILE");
}

void write_json(const std::string& path, const nlohmann::json& j) {
  if (path.empty()) return;
  std::ofstream(path) << j.dump(2) << '\n';
}

}  // namespace

void add_bench_command(CLI::App& app, int& status) {
  auto* bench = app.add_subcommand("bench", "Throughput harness");
  bench->require_subcommand(1);
  auto a = std::make_shared<BenchArgs>();
  auto* train = bench->add_subcommand("train", "Whole training step: tokens/s, GFLOP/s, memory");
  add_model_options(train, *a);
  train->add_option("--batch", a->batch)->capture_default_str();
  train->add_option("--seq", a->seq)->capture_default_str();
  train->add_option("--steps", a->steps)->capture_default_str();
  add_device_options(train, *a);
  train->callback([a, &status] {
    a->model.max_seq_len = std::max(a->model.max_seq_len, a->seq);
    nlohmann::json runs = nlohmann::json::array();
    if (a->device == "cuda") runs.push_back(bench_train(*a, a->threads.front()));
    else
      for (int t : a->threads) runs.push_back(bench_train(*a, t));
    write_json(a->json, {{"bench", "train"}, {"runs", runs}});
    status = 0;
  });
  auto* score = bench->add_subcommand("score", "Teacher scoring (prefill + head): tokens/s, GFLOP/s");
  add_model_options(score, *a);
  score->add_option("--batch", a->batch)->capture_default_str();
  score->add_option("--seq", a->seq)->capture_default_str();
  score->add_option("--steps", a->steps)->capture_default_str();
  add_device_options(score, *a);
  score->callback([a, &status] {
    a->model.max_seq_len = std::max(a->model.max_seq_len, a->seq);
    nlohmann::json runs = nlohmann::json::array();
    if (a->device == "cuda") runs.push_back(bench_score_device(*a));
    else
      for (int t : a->threads) runs.push_back(bench_score(*a, t));
    write_json(a->json, {{"bench", "score"}, {"runs", runs}});
    status = 0;
  });
  auto* decode = bench->add_subcommand("decode", "KV-cache decoding: tokens/s against the roofline");
  add_model_options(decode, *a);
  decode->add_option("--batch-sizes", a->decode_batches)->capture_default_str();
  decode->add_option("--prompt", a->prompt)->capture_default_str();
  decode->add_option("--new-tokens", a->new_tokens)->capture_default_str();
  add_device_options(decode, *a);
  decode->callback([a, &status] {
    nlohmann::json runs = nlohmann::json::array();
    if (a->device == "cuda") runs.push_back(bench_decode(*a, a->threads.front()));
    else
      for (int t : a->threads) runs.push_back(bench_decode(*a, t));
    write_json(a->json, {{"bench", "decode"}, {"runs", runs}});
    status = 0;
  });
}

}  // namespace opd::app
