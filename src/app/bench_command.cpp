// `opd bench train|decode`: whole-step throughput of this machine, stated against ceilings
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
#include "backend/ops.hpp"
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
  std::string device = "cpu";  // train: cpu | cuda
};

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

// Activation floats a training step keeps (see Transformer::ensure_buffers).
double activation_mib(const model::ModelConfig& c, int64_t B, int64_t T) {
  const double N = static_cast<double>(B * T);
  const double per_layer = N * (4.0 * c.d_model + 2 + 2.0 * c.q_size() + 2.0 * c.kv_size() +
                                3.0 * c.d_ff) +
                           static_cast<double>(B * c.n_heads * T);  // attention lse
  const double workspace = N * (3.0 * c.d_model + 2.0 * c.q_size() + 2.0 * c.kv_size() + 3.0 * c.d_ff);
  return 4.0 * (c.n_layers * per_layer + workspace + N * (2.0 * c.d_model + 4)) / (1 << 20);
}

nlohmann::json bench_train(const BenchArgs& a, int threads) {
  ops::set_blas_threads(threads);
  const bool gpu = a.device == "cuda";
  if (gpu && !ops::use_cuda_device(0))
    input_error("bench train --device cuda", "no CUDA device (or opd was built without CUDA)",
                "run on a GPU machine, or use --device cpu");
  const core::Device dev = gpu ? core::Device::Cuda : core::Device::Host;
  // The GEMM ceiling of the same device, measured in this run.
  const double sgemm = gpu ? measure_device_gemm_gflops() : measure_sgemm_gflops();
  model::Transformer m(a.model, {}, {}, dev);
  m.init_weights(1);
  model::AdamW opt(m.params());
  model::OptimConfig oc;
  std::vector<int32_t> ids(static_cast<std::size_t>(a.batch * a.seq)), tg(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    ids[i] = static_cast<int32_t>((i * 7919) % static_cast<std::size_t>(a.model.vocab_size));
    tg[i] = static_cast<int32_t>((i * 104729 + 1) % static_cast<std::size_t>(a.model.vocab_size));
  }
  Tensor tid = Tensor::from_vector(ids, {a.batch, a.seq});
  Tensor ttg = Tensor::from_vector(tg, {a.batch, a.seq});
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
  const double state_mib = 16.0 * static_cast<double>(m.params().numel()) / (1 << 20);
  nlohmann::json j = {{"mode", "train"},
                      {"device", a.device},
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
                        {"activations", activation_mib(m.config(), a.batch, a.seq)}}}};
  std::printf(
      "train  %s threads %d: %.3f s/step, %.0f tok/s, %.1f GFLOP/s = %.1f%% of %s %.1f GFLOP/s; "
      "peak RSS %.0f MiB (params+grads+AdamW %.0f MiB, activations ~%.0f MiB)\n",
      a.device.c_str(), threads, step_s, tokens / step_s, gflops, 100 * gflops / sgemm,
      gpu ? "cuBLASLt sgemm" : "sgemm", sgemm, peak_rss_mib(), state_mib,
      activation_mib(m.config(), a.batch, a.seq));
  return j;
}

nlohmann::json bench_decode(const BenchArgs& a, int threads) {
  ops::set_blas_threads(threads);
  const bool gpu = a.device == "cuda";
  if (gpu && !ops::use_cuda_device(0))
    input_error("bench decode --device cuda", "no CUDA device (or opd was built without CUDA)",
                "run on a GPU machine, or use --device cpu");
  // The memory bandwidth of the device the weights live on, measured in this run.
  const double bw = gpu ? measure_device_copy_gbs() : measure_read_bandwidth(threads);
  model::Transformer m(a.model, {}, {}, gpu ? core::Device::Cuda : core::Device::Host);
  m.init_weights(1);
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
    core::Stopwatch t;
    auto gens = model::generate(m, prompts, sc, 1, streams, -1);
    const double secs = t.seconds();
    int64_t produced = 0;
    for (const auto& g : gens) produced += static_cast<int64_t>(g.tokens.size());
    // Bytes one decode step must read: every weight except the embedding table (only B rows of
    // it are gathered), the LM head, and the KV cache at the mean context length.
    double weights = 4.0 * static_cast<double>(m.params().numel() - c.vocab_size * c.d_model);
    if (c.tie_embeddings) weights += 4.0 * static_cast<double>(c.vocab_size * c.d_model);
    const double mean_ctx = static_cast<double>(a.prompt) + static_cast<double>(a.new_tokens) / 2;
    const double kv = 4.0 * 2 * c.n_layers * static_cast<double>(B) * mean_ctx * c.kv_size();
    const double roofline = static_cast<double>(B) * bw * 1e9 / (weights + kv);
    const double tps = static_cast<double>(produced) / secs;
    std::printf("decode %s threads %d batch %lld: %.1f tok/s, roofline %.1f tok/s (%.1f GB/s), %.1f%%\n",
                a.device.c_str(), threads, static_cast<long long>(B), tps, roofline, bw,
                100 * tps / roofline);
    rows.push_back({{"batch", B},
                    {"tokens_per_second", tps},
                    {"roofline_tokens_per_second", roofline},
                    {"fraction_of_roofline", tps / roofline}});
  }
  return {{"mode", "decode"}, {"device", a.device}, {"threads", threads}, {"read_bandwidth_gbs", bw},
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
  const int64_t N = a.batch * a.seq;
  std::vector<int32_t> ids(static_cast<std::size_t>(N)), rows(ids.size()), tg(ids.size());
  for (int64_t i = 0; i < N; ++i) {
    const auto ii = static_cast<std::size_t>(i);
    ids[ii] = static_cast<int32_t>((i * 7919) % a.model.vocab_size);
    rows[ii] = static_cast<int32_t>(i);
    tg[ii] = static_cast<int32_t>((i * 104729 + 1) % a.model.vocab_size);
  }
  distill::ScoreRequest req;
  req.ids = Tensor::from_vector(ids, {a.batch, a.seq});
  req.rows = Tensor::from_vector(rows, {N});
  req.targets = Tensor::from_vector(tg, {N});
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
  train->add_option("--device", a->device, "cpu, or cuda (fp32 on the first GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
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
  score->callback([a, &status] {
    a->model.max_seq_len = std::max(a->model.max_seq_len, a->seq);
    nlohmann::json runs = nlohmann::json::array();
    for (int t : a->threads) runs.push_back(bench_score(*a, t));
    write_json(a->json, {{"bench", "score"}, {"runs", runs}});
    status = 0;
  });
  auto* decode = bench->add_subcommand("decode", "KV-cache decoding: tokens/s against the roofline");
  add_model_options(decode, *a);
  decode->add_option("--batch-sizes", a->decode_batches)->capture_default_str();
  decode->add_option("--prompt", a->prompt)->capture_default_str();
  decode->add_option("--new-tokens", a->new_tokens)->capture_default_str();
  decode->add_option("--device", a->device, "cpu, or cuda (fp32 on the first GPU; sampling on the host)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
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
