#include "distill/rollout.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "distill/response_logits.hpp"
#include "parallel/vocab_parallel.hpp"
#include "model/lm_loss.hpp"
#include "data/sequence.hpp"
#include "data/verifier.hpp"

namespace opd::distill {

namespace {

// Lays out prompt + response token lists as a right-padded [B, T] batch with its scored rows.
void layout(RolloutBatch& rb, const std::vector<std::vector<int32_t>>& prompts,
            const std::vector<std::vector<int32_t>>& responses, int32_t pad) {
  const int64_t B = static_cast<int64_t>(prompts.size());
  int64_t T = 1;
  for (int64_t b = 0; b < B; ++b)
    T = std::max<int64_t>(T, static_cast<int64_t>(prompts[b].size() + responses[b].size()));
  rb.ids = core::Tensor::empty({B, T}, core::DType::I32);
  int32_t* ids = rb.ids.data<int32_t>();
  std::fill(ids, ids + B * T, pad);
  rb.response_len.assign(static_cast<std::size_t>(B), 0);
  rb.prompt_len.assign(static_cast<std::size_t>(B), 0);
  for (int64_t b = 0; b < B; ++b) {
    const auto& p = prompts[static_cast<std::size_t>(b)];
    const auto& r = responses[static_cast<std::size_t>(b)];
    std::copy(p.begin(), p.end(), ids + b * T);
    std::copy(r.begin(), r.end(), ids + b * T + static_cast<int64_t>(p.size()));
    rb.response_len[static_cast<std::size_t>(b)] = static_cast<int32_t>(r.size());
    rb.prompt_len[static_cast<std::size_t>(b)] = static_cast<int32_t>(p.size());
    for (std::size_t j = 0; j < r.size(); ++j) {
      rb.rows.push_back(static_cast<int32_t>(b * T + static_cast<int64_t>(p.size() + j) - 1));
      rb.targets.push_back(r[j]);
      rb.row_seq.push_back(static_cast<int32_t>(b));
      rb.row_index.push_back(static_cast<int32_t>(j));
    }
  }
}

}  // namespace

RolloutBatch make_rollouts(model::Transformer& student, const data::Tokenizer& tok,
                           const std::vector<data::Example>& examples,
                           const std::vector<int64_t>& chosen, int64_t samples,
                           const model::SamplingConfig& sampling, uint64_t seed,
                           uint64_t stream_base, const std::string& marker) {
  RolloutBatch rb;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<uint64_t> streams;
  for (int64_t e : chosen)
    for (int64_t s = 0; s < samples; ++s) {
      prompts.push_back(data::build_prompt(tok, examples[static_cast<std::size_t>(e)].prompt).tokens);
      rb.example.push_back(static_cast<int32_t>(e));
      streams.push_back(stream_base + streams.size());
    }
  auto gens = model::generate(student, prompts, sampling, seed, streams, tok.eos_id(), tok.vocab_size());
  std::vector<std::vector<int32_t>> responses;
  rb.k = sampling.record_topk;
  for (std::size_t b = 0; b < gens.size(); ++b) {
    const auto& g = gens[b];
    responses.push_back(g.tokens);
    rb.logmu.insert(rb.logmu.end(), g.logprobs.begin(), g.logprobs.end());
    rb.topk.insert(rb.topk.end(), g.topk_ids.begin(), g.topk_ids.end());
    rb.responses.push_back(tok.decode(g.tokens));
    rb.truncated.push_back(!g.stopped);
    const auto& answer = examples[static_cast<std::size_t>(rb.example[b])].answer;
    rb.correct.push_back(!answer.empty() && data::verify(rb.responses.back(), answer, marker));
  }
  layout(rb, prompts, responses, tok.pad_id());
  rb.on_policy = true;
  return rb;
}

RolloutBatch make_fixed_batch(const data::Tokenizer& tok,
                              const std::vector<data::Example>& examples,
                              const std::vector<int64_t>& chosen, int64_t context,
                              const std::string& marker) {
  RolloutBatch rb;
  std::vector<std::vector<int32_t>> prompts, responses;
  for (int64_t e : chosen) {
    const auto& ex = examples[static_cast<std::size_t>(e)];
    data::TokenSequence s = data::build_sequence(tok, ex.prompt, ex.response, true);
    const auto split = static_cast<std::size_t>(s.prompt_len);
    std::vector<int32_t> p(s.tokens.begin(), s.tokens.begin() + static_cast<std::ptrdiff_t>(split));
    std::vector<int32_t> r(s.tokens.begin() + static_cast<std::ptrdiff_t>(split), s.tokens.end());
    const auto room = static_cast<std::size_t>(std::max<int64_t>(0, context - static_cast<int64_t>(p.size())));
    const bool cut = r.size() > room;
    if (cut) r.resize(room);
    prompts.push_back(std::move(p));
    responses.push_back(std::move(r));
    rb.example.push_back(static_cast<int32_t>(e));
    rb.responses.push_back(ex.response);
    rb.truncated.push_back(cut);
    rb.correct.push_back(!ex.answer.empty() && data::verify(ex.response, ex.answer, marker));
  }
  layout(rb, prompts, responses, tok.pad_id());
  rb.logmu.assign(rb.rows.size(), 0.0f);
  rb.on_policy = false;
  return rb;
}

Relayout relayout(const RolloutBatch& rb, const data::Tokenizer& tok,
                  const std::vector<std::string>& prompts) {
  OPD_CHECK(static_cast<int64_t>(prompts.size()) == rb.batch(), "one prompt per sequence");
  const int64_t B = rb.batch(), T = rb.seq_len();
  const int32_t* ids = rb.ids.data<int32_t>();
  std::vector<std::vector<int32_t>> heads;
  int64_t width = 1;
  for (int64_t b = 0; b < B; ++b) {
    heads.push_back(data::build_prompt(tok, prompts[static_cast<std::size_t>(b)]).tokens);
    width = std::max<int64_t>(width, static_cast<int64_t>(heads.back().size()) +
                                         rb.response_len[static_cast<std::size_t>(b)]);
  }
  Relayout out;
  out.ids = core::Tensor::empty({B, width}, core::DType::I32);
  int32_t* dst = out.ids.data<int32_t>();
  std::fill(dst, dst + B * width, tok.pad_id());
  for (int64_t b = 0; b < B; ++b) {
    const auto& h = heads[static_cast<std::size_t>(b)];
    const int32_t len = rb.response_len[static_cast<std::size_t>(b)];
    std::copy(h.begin(), h.end(), dst + b * width);
    const int32_t* resp = ids + b * T + rb.prompt_len[static_cast<std::size_t>(b)];
    std::copy(resp, resp + len, dst + b * width + static_cast<int64_t>(h.size()));
  }
  for (std::size_t i = 0; i < rb.rows.size(); ++i) {
    const int64_t b = rb.row_seq[i];
    out.rows.push_back(static_cast<int32_t>(
        b * width + static_cast<int64_t>(heads[static_cast<std::size_t>(b)].size()) + rb.row_index[i] - 1));
  }
  return out;
}

std::string rollout_to_json(const RolloutBatch& rb) {
  nlohmann::json j = {{"shape", {rb.batch(), rb.seq_len()}},
                      {"ids", rb.ids.to_vector_i32()},
                      {"rows", rb.rows},
                      {"targets", rb.targets},
                      {"logmu", rb.logmu},
                      {"topk", rb.topk},
                      {"k", rb.k},
                      {"row_seq", rb.row_seq},
                      {"row_index", rb.row_index},
                      {"response_len", rb.response_len},
                      {"prompt_len", rb.prompt_len},
                      {"example", rb.example},
                      {"correct", rb.correct},
                      {"truncated", rb.truncated},
                      {"responses", rb.responses},
                      {"on_policy", rb.on_policy}};
  return j.dump();
}

RolloutBatch rollout_from_json(const std::string& text) {
  const nlohmann::json j = nlohmann::json::parse(text);
  RolloutBatch rb;
  const auto shape = j.at("shape").get<std::vector<int64_t>>();
  rb.ids = core::Tensor::from_vector(j.at("ids").get<std::vector<int32_t>>(), {shape.at(0), shape.at(1)});
  j.at("rows").get_to(rb.rows);
  j.at("targets").get_to(rb.targets);
  j.at("logmu").get_to(rb.logmu);
  j.at("topk").get_to(rb.topk);
  j.at("k").get_to(rb.k);
  j.at("row_seq").get_to(rb.row_seq);
  j.at("row_index").get_to(rb.row_index);
  j.at("response_len").get_to(rb.response_len);
  j.at("prompt_len").get_to(rb.prompt_len);
  j.at("example").get_to(rb.example);
  j.at("correct").get_to(rb.correct);
  j.at("truncated").get_to(rb.truncated);
  j.at("responses").get_to(rb.responses);
  j.at("on_policy").get_to(rb.on_policy);
  return rb;
}

std::vector<int32_t> student_topk(model::Transformer& student, const RolloutBatch& rb, int k,
                                  int64_t rows_per_block) {
  namespace ops = opd::backend;
  const int64_t M = rb.num_rows(), V = student.config().vocab_size, T = rb.seq_len();
  std::vector<int32_t> out(static_cast<std::size_t>(M * k));
  if (M == 0) return out;
  const parallel::PipelineParallel& pp = student.pipeline();
  const core::Device dev = student.device();  // the blocks live there; the ids come back
  core::Tensor logits = core::Tensor::empty({rows_per_block, V}, core::DType::F32, dev);
  core::Tensor vals = core::Tensor::empty({rows_per_block, k}, core::DType::F32, dev);
  core::Tensor ids = core::Tensor::empty({rows_per_block, k}, core::DType::I32, dev);
  const std::vector<RowGroup> groups = row_groups(rb, pp.size());  // one per pipeline stage
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    const RowGroup& g = groups[gi];
    const core::Tensor& h = student.forward(rb.ids.slice(g.b0, g.b1),
                                            model::causal_positions(g.b1 - g.b0, T), false,
                                            nullptr, static_cast<int>(gi));
    if (!student.has_head() || g.rows() == 0) continue;
    std::vector<int32_t> local(rb.rows.begin() + g.r0, rb.rows.begin() + g.r1);
    for (int32_t& r : local) r -= static_cast<int32_t>(g.b0 * T);
    core::Tensor hr = core::Tensor::empty({g.rows(), student.config().d_model}, core::DType::F32, dev);
    ops::embedding_forward(h, ops::on_device(core::Tensor::from_vector(local, {g.rows()}), dev), hr);
    for (int64_t r0 = 0; r0 < g.rows(); r0 += rows_per_block) {
      const int64_t r1 = std::min(g.rows(), r0 + rows_per_block);
      core::Tensor v = vals.slice(0, r1 - r0), i = ids.slice(0, r1 - r0);
      if (student.tensor_parallel().size() > 1) {  // top-k across the vocabulary shards
        core::Tensor l = logits.view({logits.numel()}).slice(0, (r1 - r0) * (V / student.tensor_parallel().size()))
                             .view({r1 - r0, V / student.tensor_parallel().size()});
        student.shard_logits(hr.slice(r0, r1), l);
        parallel::vocab_parallel_topk(l, student.vocab_range(), k, student.tensor_parallel(), v, i);
      } else {
        core::Tensor l = logits.slice(0, r1 - r0);
        student.logits(hr.slice(r0, r1), l);
        ops::topk_rows(l, k, v, i);
      }
      const core::Tensor got = ops::on_device(i, core::Device::Host);
      std::copy(got.data<int32_t>(), got.data<int32_t>() + (r1 - r0) * k, out.begin() + (g.r0 + r0) * k);
    }
  }
  pp.wait_sends();
  pp.broadcast_from_last(out.data(), static_cast<int64_t>(out.size() * sizeof(int32_t)));
  return out;
}

}  // namespace opd::distill
