#include "model/generator.hpp"

#include <algorithm>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/lm_loss.hpp"

namespace opd::model {

namespace ops = opd::backend;
using core::DType;
using core::Tensor;

std::vector<Generation> generate(Transformer& model,
                                 const std::vector<std::vector<int32_t>>& prompts,
                                 const SamplingConfig& cfg, uint64_t seed,
                                 const std::vector<uint64_t>& stream_ids, int32_t eos_id) {
  const int64_t B = static_cast<int64_t>(prompts.size());
  OPD_CHECK(stream_ids.size() == prompts.size(), "one stream id per prompt");
  std::vector<Generation> out(static_cast<std::size_t>(B));
  if (B == 0) return out;
  const ModelConfig& mc = model.config();
  int64_t longest = 0;
  for (std::size_t b = 0; b < prompts.size(); ++b) {
    const int64_t n = static_cast<int64_t>(prompts[b].size());
    if (n == 0) input_error("generate", "prompt " + std::to_string(b) + " is empty");
    if (n >= mc.max_seq_len)
      input_error("generate",
                  "prompt " + std::to_string(b) + " has " + std::to_string(n) +
                      " tokens, the model's context is " + std::to_string(mc.max_seq_len),
                  "shorten the prompt or use a model with a larger max_seq_len");
    longest = std::max(longest, n);
  }
  const int64_t capacity = std::min<int64_t>(mc.max_seq_len, longest + cfg.max_new_tokens);
  KVCache cache(mc, B, capacity, model.tensor_parallel().size());

  // Prefill: prompts right-padded (padding repeats a valid id; its positions are overwritten by
  // later decode steps before any query can see them).
  Tensor ids = Tensor::empty({B, longest}, DType::I32);
  Tensor pos = causal_positions(B, longest);
  std::vector<int64_t> length(static_cast<std::size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    const auto& p = prompts[static_cast<std::size_t>(b)];
    length[static_cast<std::size_t>(b)] = static_cast<int64_t>(p.size());
    for (int64_t t = 0; t < longest; ++t)
      ids.data<int32_t>()[b * longest + t] = p[static_cast<std::size_t>(std::min<int64_t>(
          t, static_cast<int64_t>(p.size()) - 1))];
  }
  const Tensor& h_all = model.forward(ids, pos, false, &cache);
  Tensor last_rows = Tensor::empty({B}, DType::I32);
  for (int64_t b = 0; b < B; ++b)
    last_rows.data<int32_t>()[b] = static_cast<int32_t>(b * longest + length[static_cast<std::size_t>(b)] - 1);
  Tensor h = Tensor::empty({B, mc.d_model});
  ops::embedding_forward(h_all, last_rows, h);  // gathers each sequence's last prompt row

  Tensor logits = Tensor::empty({B, mc.vocab_size});
  Tensor uniforms = Tensor::empty({B});
  Tensor next = Tensor::empty({B}, DType::I32);
  Tensor logprobs = Tensor::empty({B});
  Tensor step_ids = Tensor::empty({B, 1}, DType::I32);
  Tensor step_pos = Tensor::empty({B, 1}, DType::I32);
  std::vector<core::RngStream> streams;
  for (int64_t b = 0; b < B; ++b)
    streams.emplace_back(seed, core::RngPurpose::Sampling, stream_ids[static_cast<std::size_t>(b)]);
  std::vector<bool> done(static_cast<std::size_t>(B), false);
  const int K = cfg.record_topk;
  Tensor topk_vals, topk_ids;
  if (K > 0) {
    topk_vals = Tensor::empty({B, K});
    topk_ids = Tensor::empty({B, K}, DType::I32);
  }

  for (int64_t step = 0; step < cfg.max_new_tokens; ++step) {
    model.logits(h, logits);
    for (int64_t b = 0; b < B; ++b)
      uniforms.data<float>()[b] = done[static_cast<std::size_t>(b)] ? 0.0f : streams[static_cast<std::size_t>(b)].uniform();
    ops::sample_rows(logits, cfg.temperature, cfg.top_k, cfg.top_p, uniforms, next, logprobs);
    if (K > 0) ops::topk_rows(logits, K, topk_vals, topk_ids);
    bool all_done = true;
    for (int64_t b = 0; b < B; ++b) {
      const auto bi = static_cast<std::size_t>(b);
      int32_t tok = next.data<int32_t>()[b];
      if (!done[bi]) {
        out[bi].tokens.push_back(tok);
        out[bi].logprobs.push_back(logprobs.data<float>()[b]);
        if (K > 0) {
          const int32_t* ids = topk_ids.data<int32_t>() + b * K;
          out[bi].topk_ids.insert(out[bi].topk_ids.end(), ids, ids + K);
        }
        const bool stop = tok == eos_id || std::find(cfg.stop_tokens.begin(), cfg.stop_tokens.end(),
                                                     tok) != cfg.stop_tokens.end();
        if (stop) out[bi].stopped = true;
        if (stop || length[bi] + 1 >= capacity) done[bi] = true;
      }
      all_done = all_done && done[bi];
      // Finished rows keep decoding a dummy token at a clamped position: they only touch their
      // own cache rows and keep the batch shape fixed.
      step_ids.data<int32_t>()[b] = tok;
      step_pos.data<int32_t>()[b] = static_cast<int32_t>(std::min<int64_t>(length[bi], capacity - 1));
    }
    if (all_done) break;
    const Tensor& h_step = model.forward(step_ids, step_pos, false, &cache);
    ops::copy(h_step, h);
    for (int64_t b = 0; b < B; ++b)
      if (!done[static_cast<std::size_t>(b)]) ++length[static_cast<std::size_t>(b)];
  }
  return out;
}

}  // namespace opd::model
