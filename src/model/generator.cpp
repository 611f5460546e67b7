#include "model/generator.hpp"

#include <algorithm>
#include <cstring>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/lm_loss.hpp"

namespace opd::model {

namespace ops = opd::backend;
using core::DType;
using core::Tensor;

namespace {

// The sequences [begin, end) of a batch decoded together: their KV cache and, in a pipeline,
// their activation slot. Several groups let the stages of a pipeline work on different groups at
// once (stage s decodes group g while stage s + 1 decodes group g - 1).
struct Group {
  int64_t begin = 0, end = 0;
  int slot = 0;
  KVCache cache;
  Tensor step_ids, step_pos;  // [n, 1] the next token and its position
  bool live = true;           // another forward is due
  bool pending = false;       // (stages before the last) its last forward's tokens are to come
  int64_t rounds = 0;         // tokens generated so far (per sequence still running)
  int64_t size() const { return end - begin; }
};

}  // namespace

std::vector<Generation> generate(Transformer& model,
                                 const std::vector<std::vector<int32_t>>& prompts,
                                 const SamplingConfig& cfg, uint64_t seed,
                                 const std::vector<uint64_t>& stream_ids, int32_t eos_id,
                                 int64_t vocab_limit) {
  const int64_t B = static_cast<int64_t>(prompts.size());
  OPD_CHECK(stream_ids.size() == prompts.size(), "one stream id per prompt");
  OPD_CHECK(vocab_limit >= 0, "generate: vocab_limit ", vocab_limit, " is negative");
  std::vector<Generation> out(static_cast<std::size_t>(B));
  if (B == 0 || cfg.max_new_tokens <= 0) return out;
  const ModelConfig& mc = model.config();
  if (vocab_limit > mc.vocab_size)
    input_error("generate",
                "the tokenizer has " + std::to_string(vocab_limit) +
                    " tokens, more than the model's vocabulary (" +
                    std::to_string(mc.vocab_size) + ")",
                "use the tokenizer the model was trained with");
  const parallel::PipelineParallel& pp = model.pipeline();
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
  const int K = cfg.record_topk;
  std::vector<int64_t> length(static_cast<std::size_t>(B));
  for (int64_t b = 0; b < B; ++b) length[static_cast<std::size_t>(b)] = static_cast<int64_t>(prompts[static_cast<std::size_t>(b)].size());
  std::vector<bool> done(static_cast<std::size_t>(B), false);
  std::vector<core::RngStream> streams;
  for (int64_t b = 0; b < B; ++b)
    streams.emplace_back(seed, core::RngPurpose::Sampling, stream_ids[static_cast<std::size_t>(b)]);

  // One group per pipeline stage (one when there is no pipeline).
  const int64_t n_groups = std::min<int64_t>(B, pp.size());
  std::vector<Group> groups;
  for (int64_t g = 0; g < n_groups; ++g) {
    const int64_t b0 = B * g / n_groups, b1 = B * (g + 1) / n_groups;
    groups.push_back({b0, b1, static_cast<int>(g), model.make_cache(b1 - b0, capacity),
                      Tensor::empty({b1 - b0, 1}, DType::I32), Tensor::empty({b1 - b0, 1}, DType::I32)});
  }

  // The tokens of one round of a group: ids, log-probabilities (as bits) and top-k ids, as the
  // last stage sends them to the others.
  auto packet_size = [&](const Group& g) { return g.size() * (2 + K); };
  std::vector<int32_t> packet;
  Tensor logits, uniforms, next, logprobs, topk_vals, topk_ids, h_rows;

  // Records a round's tokens for the group's sequences and prepares their next decode step.
  auto apply = [&](Group& g, const int32_t* pk) {
    const int64_t n = g.size();
    g.live = false;
    for (int64_t i = 0; i < n; ++i) {
      const auto bi = static_cast<std::size_t>(g.begin + i);
      const int32_t tok = pk[i];
      if (!done[bi]) {
        float lp;
        std::memcpy(&lp, &pk[n + i], sizeof lp);
        out[bi].tokens.push_back(tok);
        out[bi].logprobs.push_back(lp);
        if (K > 0) out[bi].topk_ids.insert(out[bi].topk_ids.end(), pk + 2 * n + i * K, pk + 2 * n + (i + 1) * K);
        const bool stop = tok == eos_id || std::find(cfg.stop_tokens.begin(), cfg.stop_tokens.end(),
                                                     tok) != cfg.stop_tokens.end();
        if (stop) out[bi].stopped = true;
        if (stop || length[bi] + 1 >= capacity) done[bi] = true;
      }
      g.live = g.live || !done[bi];
      // Finished rows keep decoding a dummy token at a clamped position: they only touch their
      // own cache rows and keep the group's shape fixed.
      g.step_ids.data<int32_t>()[i] = tok;
      g.step_pos.data<int32_t>()[i] = static_cast<int32_t>(std::min<int64_t>(length[bi], capacity - 1));
    }
    g.live = g.live && ++g.rounds < cfg.max_new_tokens;
  };
  // Last stage: samples the group's next tokens from the rows h [n, D]. Logits, sampling and
  // top-k run on the model's device; only the uniforms go there and the n (n x K) results
  // come back.
  const core::Device dev = model.device();
  auto sample = [&](Group& g, const Tensor& h) {
    const int64_t n = g.size();
    logits = Tensor::empty({n, mc.vocab_size}, DType::F32, dev);
    uniforms = Tensor::empty({n});
    next = Tensor::empty({n}, DType::I32, dev);
    logprobs = Tensor::empty({n}, DType::F32, dev);
    model.logits(h, logits);
    for (int64_t i = 0; i < n; ++i) {
      const auto bi = static_cast<std::size_t>(g.begin + i);
      uniforms.data<float>()[i] = done[bi] ? 0.0f : streams[bi].uniform();
    }
    ops::sample_rows(logits, cfg.temperature, cfg.top_k, cfg.top_p, ops::on_device(uniforms, dev),
                     next, logprobs, vocab_limit);
    const Tensor ids_host = ops::on_device(next, core::Device::Host);
    const Tensor lp_host = ops::on_device(logprobs, core::Device::Host);
    packet.assign(static_cast<std::size_t>(packet_size(g)), 0);
    std::copy(ids_host.data<int32_t>(), ids_host.data<int32_t>() + n, packet.begin());
    std::memcpy(packet.data() + n, lp_host.data<float>(), static_cast<std::size_t>(n) * sizeof(float));
    if (K > 0) {
      topk_vals = Tensor::empty({n, K}, DType::F32, dev);
      topk_ids = Tensor::empty({n, K}, DType::I32, dev);
      ops::topk_rows(logits, K, topk_vals, topk_ids);
      const Tensor top_host = ops::on_device(topk_ids, core::Device::Host);
      std::copy(top_host.data<int32_t>(), top_host.data<int32_t>() + n * K, packet.begin() + 2 * n);
    }
  };

  for (int64_t round = 0;; ++round) {
    bool busy = false;
    for (Group& g : groups) {
      const int64_t n = g.size();
      if (g.pending) {  // stages before the last: the previous round's tokens, then decide
        packet.resize(static_cast<std::size_t>(packet_size(g)));
        pp.recv_from_last(packet.data(), packet_size(g) * int64_t(sizeof(int32_t)));
        apply(g, packet.data());
        g.pending = false;
      }
      if (!g.live) continue;
      busy = true;
      const Tensor* h = nullptr;
      Tensor h_last;
      if (round == 0) {
        // Prefill: prompts right-padded (padding repeats a valid id; its positions are
        // overwritten by later decode steps before any query can see them).
        Tensor ids = Tensor::empty({n, longest}, DType::I32);
        Tensor pos = causal_positions(n, longest);
        for (int64_t i = 0; i < n; ++i) {
          const auto& p = prompts[static_cast<std::size_t>(g.begin + i)];
          for (int64_t t = 0; t < longest; ++t)
            ids.data<int32_t>()[i * longest + t] = p[static_cast<std::size_t>(
                std::min<int64_t>(t, static_cast<int64_t>(p.size()) - 1))];
        }
        const Tensor& h_all = model.forward(ids, pos, false, &g.cache, g.slot);
        if (model.has_head()) {
          Tensor last_rows = Tensor::empty({n}, DType::I32);
          for (int64_t i = 0; i < n; ++i)
            last_rows.data<int32_t>()[i] = static_cast<int32_t>(i * longest + length[static_cast<std::size_t>(g.begin + i)] - 1);
          last_rows = ops::on_device(last_rows, dev);
          h_last = Tensor::empty({n, mc.d_model}, DType::F32, model.device());
          ops::embedding_forward(h_all, last_rows, h_last);  // each sequence's last prompt row
          h = &h_last;
        }
      } else {
        h = &model.forward(g.step_ids, g.step_pos, false, &g.cache, g.slot);
        for (int64_t i = 0; i < n; ++i)
          if (!done[static_cast<std::size_t>(g.begin + i)]) ++length[static_cast<std::size_t>(g.begin + i)];
      }
      if (model.has_head()) {
        sample(g, *h);
        if (pp.size() > 1) pp.send_from_last(packet.data(), packet_size(g) * int64_t(sizeof(int32_t)));
        apply(g, packet.data());
      } else {
        g.pending = true;
      }
    }
    bool waiting = false;
    for (const Group& g : groups) waiting = waiting || g.pending;
    if (!busy && !waiting) break;
  }
  pp.wait_sends();
  return out;
}

}  // namespace opd::model
