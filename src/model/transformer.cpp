#include "model/transformer.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/param_specs.hpp"
#include "parallel/vocab_parallel.hpp"

namespace opd::model {

namespace ops = opd::backend;
using core::Shape;

KVCache::KVCache(int64_t layers, int64_t batch_, int64_t capacity_, int64_t kv_heads,
                 int64_t head_dim, core::Device device)
    : batch(batch_), capacity(capacity_) {
  for (int64_t l = 0; l < layers; ++l)
    for (auto* list : {&k, &v}) {
      list->push_back(Tensor::empty({batch, capacity, kv_heads, head_dim}, core::DType::F32, device));
      ops::fill(list->back(), 0.0f);
    }
}

Transformer::Transformer(const ModelConfig& cfg, parallel::TensorParallel tp,
                         parallel::PipelineParallel pp, core::Device device)
    : cfg_(cfg), params_(std::move(tp), std::move(pp), device) {
  cfg_.validate("model");
  const int P = tensor_parallel().size();
  cfg_.check_layout(P, pipeline().size(), "model", "parallel");
  heads_ = cfg_.n_heads / P;
  kv_heads_ = cfg_.n_kv_heads / P;
  ff_ = cfg_.d_ff / P;
  vocab_ = cfg_.vocab_size / P;
  const auto [first_layer, end_layer] = pipeline().my_layers(cfg_.n_layers);
  layers_begin_ = first_layer;
  layers_.assign(static_cast<std::size_t>(end_layer - first_layer), LayerIndex{});
  const std::vector<ParamSpec> specs = parameter_specs(cfg_);
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const ParamSpec& sp = specs[i];
    const bool here = sp.layer == ParamSpec::kFirstStage ? pipeline().first()
                      : sp.layer == ParamSpec::kLastStage
                          ? pipeline().last()
                          : sp.layer >= first_layer && sp.layer < end_layer;
    if (!here) continue;
    const std::size_t at = params_.add(sp.name, sp.shape, sp.decay, sp.shard_axis);
    params_[at].spec_index = static_cast<int64_t>(i);
    const std::string& n = sp.name;
    auto is = [&](const char* suffix) {
      const std::string t(suffix);
      return n.size() >= t.size() && n.compare(n.size() - t.size(), t.size(), t) == 0;
    };
    if (n == "model.embed_tokens.weight") embed_ = at;
    else if (n == "model.norm.weight") final_norm_ = at;
    else if (n == "lm_head.weight") lm_head_ = at;
    else {
      LayerIndex& li = layers_[static_cast<std::size_t>(sp.layer - first_layer)];
      if (is("input_layernorm.weight")) li.attn_norm = at;
      else if (is("q_proj.weight")) li.q = at;
      else if (is("k_proj.weight")) li.k = at;
      else if (is("v_proj.weight")) li.v = at;
      else if (is("q_proj.bias")) li.q_bias = at;
      else if (is("k_proj.bias")) li.k_bias = at;
      else if (is("v_proj.bias")) li.v_bias = at;
      else if (is("q_norm.weight")) li.q_norm = at;
      else if (is("k_norm.weight")) li.k_norm = at;
      else if (is("o_proj.weight")) li.o = at;
      else if (is("post_attention_layernorm.weight")) li.mlp_norm = at;
      else if (is("gate_proj.weight")) li.gate = at;
      else if (is("up_proj.weight")) li.up = at;
      else if (is("down_proj.weight")) li.down = at;
      else internal_error("Transformer", "unplaced parameter " + n);
    }
  }
  if (cfg_.tie_embeddings && pipeline().last()) lm_head_ = embed_;  // pp = 1 (checked above)
}

void Transformer::set_compute_dtype(core::DType dtype) {
  params_.set_compute_dtype(dtype);
  // The lookup reads the embedding table in f32; only a tied head needs its bf16 copy.
  if (embed_ != kNone && embed_ != lm_head_) params_[embed_].compute = Tensor();
  slots_.clear();  // activation buffers change dtype
  ws_ = Workspace{};
}

Param& Transformer::lm_head() {
  OPD_CHECK(lm_head_ != kNone, "the LM head lives on the last pipeline stage");
  return params_[lm_head_];
}

KVCache Transformer::make_cache(int64_t batch, int64_t capacity) const {
  return KVCache(static_cast<int64_t>(layers_.size()), batch, capacity, kv_heads_,
                 cfg_.head_size(), device());
}

void Transformer::init_weights(uint64_t seed) {
  const float out_scale = 1.0f / std::sqrt(2.0f * static_cast<float>(cfg_.n_layers));
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Param& p = params_[i];
    // The whole parameter is drawn and this rank's shard kept, so every layout initialises the
    // same model.
    const bool in_place = p.value.is_host() && !p.sharded();
    Tensor whole = in_place ? p.value : Tensor::empty(p.global_shape);
    float* x = whole.data<float>();
    const auto& n = p.name;
    auto ends_with = [&](const char* s) {
      std::string t(s);
      return n.size() >= t.size() && n.compare(n.size() - t.size(), t.size(), t) == 0;
    };
    if (whole.ndim() == 1) {  // norm gains 1, biases 0
      const float v = ends_with(".bias") ? 0.0f : 1.0f;
      for (int64_t j = 0; j < whole.numel(); ++j) x[j] = v;
    } else {
      float std = static_cast<float>(cfg_.init_std);
      if (ends_with("o_proj.weight") || ends_with("down_proj.weight")) std *= out_scale;
      core::RngStream rng(seed, core::RngPurpose::Init, static_cast<uint64_t>(p.spec_index));
      for (int64_t j = 0; j < whole.numel(); ++j) x[j] = std * rng.normal();
    }
    if (!in_place) take_shard(whole, p);  // this rank's slice, moved to the device if there
  }
  params_.values_changed();
}

Transformer::Slot& Transformer::ensure_slot(int slot, int64_t B, int64_t T, bool keep) {
  OPD_CHECK(slot >= 0, "activation slot ", slot);
  if (static_cast<std::size_t>(slot) >= slots_.size()) slots_.resize(static_cast<std::size_t>(slot) + 1);
  Slot& s = slots_[static_cast<std::size_t>(slot)];
  if (B == s.buf_batch && T == s.buf_seq && keep == s.buf_keep) return s;
  const int64_t N = B * T, D = cfg_.d_model, F = ff_, H = heads_;
  const int64_t QS = heads_ * cfg_.head_size(), KS = kv_heads_ * cfg_.head_size();
  auto make_layer = [&]() {
    LayerActs a;
    a.xn1 = alloc_compute({N, D});
    a.rstd1 = alloc({N});
    if (cfg_.qk_norm) {
      a.q_raw = alloc({N, QS});
      a.k_raw = alloc({N, KS});
      a.rstd_q = alloc({N * H});
      a.rstd_k = alloc({N * kv_heads_});
    }
    a.q = alloc({N, QS});
    a.k = alloc({N, KS});
    a.v = alloc({N, KS});
    if (keep) a.attn_lse = alloc({B, H, T});
    a.attn = alloc_compute({N, QS});
    a.x_mid = alloc({N, D});
    a.xn2 = alloc_compute({N, D});
    a.rstd2 = alloc({N});
    a.gate = alloc({N, F});
    a.up = alloc({N, F});
    a.act = alloc_compute({N, F});
    return a;
  };
  const auto L = static_cast<int64_t>(layers_.size());
  s.resid.clear();
  s.acts.clear();
  for (int64_t i = 0; i < (keep ? L + 1 : 2); ++i) s.resid.push_back(alloc({N, D}));
  for (int64_t i = 0; i < (keep ? L : 1); ++i) s.acts.push_back(make_layer());
  s.h = alloc({N, D});
  s.rstd_f = alloc({N});
  s.tmp = alloc({N, D});
  s.stage = compute_dtype() == core::DType::F32 ? Tensor() : alloc({N * QS});
  s.buf_batch = B;
  s.buf_seq = T;
  s.buf_keep = keep;
  s.epoch = ++slot_epochs_;
  return s;
}

void Transformer::ensure_workspace(int64_t N) {
  if (N == ws_.rows) return;
  const int64_t D = cfg_.d_model, F = ff_;
  const int64_t QS = heads_ * cfg_.head_size(), KS = kv_heads_ * cfg_.head_size();
  ws_ = Workspace{};
  ws_.rows = N;
  ws_.dx = alloc({N, D});
  ws_.tmp = alloc({N, D});
  ws_.d_xn = alloc({N, D});
  ws_.d_attn = alloc({N, QS});
  ws_.dq = alloc({N, QS});
  ws_.dk = alloc({N, KS});
  ws_.dv = alloc({N, KS});
  if (cfg_.qk_norm) {
    ws_.dq_raw = alloc({N, QS});
    ws_.dk_raw = alloc({N, KS});
  }
  ws_.d_act = alloc({N, F});
  ws_.d_gate = alloc({N, F});
  ws_.d_up = alloc({N, F});
  if (cfg_.qk_norm && tensor_parallel().size() > 1) {
    ws_.d_qnorm = alloc({cfg_.head_size()});
    ws_.d_knorm = alloc({cfg_.head_size()});
  }
}

const Tensor& Transformer::forward(const Tensor& ids, const Tensor& pos, bool keep,
                                   KVCache* cache, int slot) {
  OPD_CHECK(ids.ndim() == 2 && pos.shape() == ids.shape(), "forward: ids ", ids.describe(),
            " pos ", pos.describe());
  OPD_CHECK(!(keep && cache), "training forward does not use a KV cache");
  const int64_t B = ids.dim(0), T = ids.dim(1);
  if (cache) OPD_CHECK(cache->batch == B, "KV cache batch ", cache->batch, " != ", B);
  Slot& s = ensure_slot(slot, B, T, keep);
  params_.refresh_compute();
  take_inputs(s, ids, pos);
  s.batch = B;
  s.seq = T;
  s.have_activations = keep;
  const parallel::PipelineParallel& pp = pipeline();
  // A decode step on one rank (one token per sequence against a KV cache) issues the same ops on
  // the same buffers every time: it is recorded once and replayed (on a GPU a CUDA graph, one
  // launch instead of hundreds). The inputs were copied in above, outside the recording.
  if (cache && T == 1 && !keep && pp.size() == 1 && tensor_parallel().size() == 1)
    s.decode_step.run(device(), decode_key(s, *cache),
                      [&] { forward_layers(s, keep, cache); });
  else
    forward_layers(s, keep, cache);
  return pp.last() ? s.h : none_;
}

void Transformer::add_projection(Slot& s, const Tensor& in, const Tensor& w, const Tensor& residual,
                                 Tensor& out) const {
  if (tensor_parallel().size() == 1) {  // one GEMM whose epilogue adds the residual (cuBLASLt)
    ops::gemm_residual(in, false, w, true, residual, out, s.tmp);
    return;
  }
  // The shares must be summed before the residual joins (it would be counted once per rank).
  ops::gemm(in, false, w, true, s.tmp);
  reduce(s.tmp);
  ops::add(residual, s.tmp, out);
}

void Transformer::forward_layers(Slot& s, bool keep, KVCache* cache) {
  const int64_t B = s.batch, T = s.seq, N = B * T;
  const int64_t H = heads_, G = kv_heads_, E = cfg_.head_size();
  const float eps = static_cast<float>(cfg_.norm_eps);
  const float theta = static_cast<float>(cfg_.rope_theta);
  const float scale = 1.0f / std::sqrt(static_cast<float>(E));
  const parallel::PipelineParallel& pp = pipeline();

  const Tensor flat_pos = s.pos.view({N});
  if (pp.first()) {
    ops::embedding_forward(w(embed_), s.ids.view({N}), s.resid[0], vocab_range());
    reduce(s.resid[0]);  // each id's row lives on one vocabulary shard
  } else {
    pp.recv_prev(s.resid[0]);
  }
  const auto L = static_cast<int64_t>(layers_.size());
  for (int64_t l = 0; l < L; ++l) {
    const LayerIndex& li = layers_[static_cast<std::size_t>(l)];
    LayerActs& a = s.acts[keep ? static_cast<std::size_t>(l) : 0];
    Tensor& x_in = s.resid[static_cast<std::size_t>(keep ? l : l % 2)];
    Tensor& x_out = s.resid[static_cast<std::size_t>(keep ? l + 1 : (l + 1) % 2)];

    // The norm writes its GEMM operand directly (bf16 in mixed precision).
    ops::rmsnorm_forward(x_in, w(li.attn_norm), eps, a.xn1, keep ? &a.rstd1 : nullptr);
    Tensor& q_lin = cfg_.qk_norm ? a.q_raw : a.q;
    Tensor& k_lin = cfg_.qk_norm ? a.k_raw : a.k;
    ops::gemm(a.xn1, false, wc(li.q), true, q_lin);
    ops::gemm(a.xn1, false, wc(li.k), true, k_lin);
    ops::gemm(a.xn1, false, wc(li.v), true, a.v);
    if (cfg_.qkv_bias) {
      ops::add_bias(q_lin, w(li.q_bias));
      ops::add_bias(k_lin, w(li.k_bias));
      ops::add_bias(a.v, w(li.v_bias));
    }
    if (cfg_.qk_norm) {
      Tensor qo = a.q.view({N * H, E}), ko = a.k.view({N * G, E});
      ops::rmsnorm_forward(a.q_raw.view({N * H, E}), w(li.q_norm), eps, qo,
                           keep ? &a.rstd_q : nullptr);
      ops::rmsnorm_forward(a.k_raw.view({N * G, E}), w(li.k_norm), eps, ko,
                           keep ? &a.rstd_k : nullptr);
    }
    Tensor q3 = a.q.view({N, H, E}), k3 = a.k.view({N, G, E});
    ops::rope_forward(q3, flat_pos, theta);
    ops::rope_forward(k3, flat_pos, theta);

    const Tensor q4 = a.q.view({B, T, H, E});
    Tensor attn = staged(s, a.attn);
    Tensor out4 = attn.view({B, T, H, E});
    if (cache) {
      Tensor& kc = cache->k[static_cast<std::size_t>(l)];
      Tensor& vc = cache->v[static_cast<std::size_t>(l)];
      Tensor kc3 = kc.view({B, cache->capacity, G * E}), vc3 = vc.view({B, cache->capacity, G * E});
      ops::scatter_rows(a.k.view({B, T, G * E}), s.pos, kc3);
      ops::scatter_rows(a.v.view({B, T, G * E}), s.pos, vc3);
      ops::attention_forward(q4, kc, vc, s.pos, scale, out4, nullptr, nullptr, compute_dtype());
    } else {
      ops::attention_forward(q4, a.k.view({B, T, G, E}), a.v.view({B, T, G, E}), s.pos, scale,
                             out4, nullptr, keep ? &a.attn_lse : nullptr, compute_dtype());
    }
    keep_input(attn, a.attn);
    add_projection(s, a.attn, wc(li.o), x_in, a.x_mid);  // row-parallel: the heads' shares

    ops::rmsnorm_forward(a.x_mid, w(li.mlp_norm), eps, a.xn2, keep ? &a.rstd2 : nullptr);
    ops::gemm(a.xn2, false, wc(li.gate), true, a.gate);
    ops::gemm(a.xn2, false, wc(li.up), true, a.up);
    ops::swiglu_forward(a.gate, a.up, a.act);
    add_projection(s, a.act, wc(li.down), a.x_mid, x_out);  // row-parallel: the hidden units' shares
  }
  const Tensor& last = s.resid[static_cast<std::size_t>(keep ? L : L % 2)];
  if (!pp.last()) {
    pp.send_next(last);
    return;
  }
  ops::rmsnorm_forward(last, w(final_norm_), eps, s.h, &s.rstd_f);
}

void Transformer::take_inputs(Slot& s, const Tensor& ids, const Tensor& pos) {
  if (device() == core::Device::Host) {
    s.ids = on_device(ids);
    s.pos = on_device(pos);
    return;
  }
  // Device copies in buffers the slot keeps while the shape stays, so that a recorded decode
  // step finds them at the same addresses.
  auto into = [&](const Tensor& x, Tensor& kept) {
    if (!kept.defined() || kept.shape() != x.shape())
      kept = Tensor::empty(x.shape(), x.dtype(), device());
    ops::copy(x, kept);
  };
  into(ids, s.ids);
  into(pos, s.pos);
}

uint64_t Transformer::decode_key(const Slot& s, const KVCache& cache) const {
  // Sizes too: a cache of another capacity may reuse the same addresses.
  uint64_t key = backend::mix_key(backend::kKeySeed, s.epoch);
  key = backend::mix_key(key, static_cast<uint64_t>(cache.batch));
  key = backend::mix_key(key, static_cast<uint64_t>(cache.capacity));
  key = backend::mix_key(key, static_cast<uint64_t>(compute_dtype()));
  key = backend::mix_key(key, s.ids.address());
  key = backend::mix_key(key, s.pos.address());
  for (std::size_t l = 0; l < cache.k.size(); ++l) {
    key = backend::mix_key(key, cache.k[l].address());
    key = backend::mix_key(key, cache.v[l].address());
  }
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Param& p = params_[i];
    key = backend::mix_key(key, p.value.address());
    if (p.compute.defined()) key = backend::mix_key(key, p.compute.address());
  }
  return key;
}

void Transformer::backward(const Tensor& d_h, int slot, bool last_pass) {
  OPD_CHECK(slot >= 0 && static_cast<std::size_t>(slot) < slots_.size() &&
                slots_[static_cast<std::size_t>(slot)].have_activations,
            "backward without a forward that kept activations (slot ", slot, ")");
  Slot& a_slot = slots_[static_cast<std::size_t>(slot)];
  const int64_t B = a_slot.batch, T = a_slot.seq, N = B * T;
  const int64_t H = heads_, G = kv_heads_, E = cfg_.head_size();
  const bool tp = tensor_parallel().size() > 1;
  const parallel::PipelineParallel& pp = pipeline();
  const float theta = static_cast<float>(cfg_.rope_theta);
  const float scale = 1.0f / std::sqrt(static_cast<float>(E));
  ensure_workspace(N);
  Workspace& s = ws_;
  const Tensor flat_pos = a_slot.pos.view({N});
  const auto L = static_cast<int64_t>(layers_.size());
  const bool notify = last_pass && grad_hook_;

  if (pp.last()) {
    OPD_CHECK(d_h.numel() == N * cfg_.d_model, "backward: d_h ", d_h.describe());
    ops::rmsnorm_backward(a_slot.resid[static_cast<std::size_t>(L)], w(final_norm_),
                          a_slot.rstd_f, d_h, s.dx, g(final_norm_));
    // The head's gradient came in before this pass (the loss's backward through the head).
    if (notify) {
      grad_hook_(final_norm_);
      if (lm_head_ != embed_) grad_hook_(lm_head_);
    }
  } else {
    pp.recv_next(s.dx);
  }
  for (int64_t l = L - 1; l >= 0; --l) {
    const LayerIndex& li = layers_[static_cast<std::size_t>(l)];
    LayerActs& a = a_slot.acts[static_cast<std::size_t>(l)];
    // MLP block: x_out = x_mid + act W_down^T.
    Tensor dx = operand(s.dx, s.c_dx);
    ops::gemm(dx, false, wc(li.down), false, s.d_act);
    ops::gemm(dx, true, a.act, false, g(li.down), 1.0f, 1.0f);
    // SwiGLU writes its gradients as the GEMM operands they are (bf16 in mixed precision).
    Tensor d_gate = operand_out(s.d_gate, s.c_gate), d_up = operand_out(s.d_up, s.c_up);
    ops::swiglu_backward(a.gate, a.up, s.d_act, d_gate, d_up);
    ops::gemm(d_gate, false, wc(li.gate), false, s.d_xn);
    ops::gemm(d_up, false, wc(li.up), false, s.d_xn, 1.0f, 1.0f);
    ops::gemm(d_gate, true, a.xn2, false, g(li.gate), 1.0f, 1.0f);
    ops::gemm(d_up, true, a.xn2, false, g(li.up), 1.0f, 1.0f);
    reduce(s.d_xn);  // column-parallel input gradient: sum over the shards
    ops::rmsnorm_backward(a.x_mid, w(li.mlp_norm), a.rstd2, s.d_xn, s.tmp, g(li.mlp_norm));
    ops::axpy(1.0f, s.tmp, s.dx);  // dx is now dL/dx_mid
    // Attention block: x_mid = x_in + attn W_o^T.
    dx = operand(s.dx, s.c_dx);
    ops::gemm(dx, false, wc(li.o), false, s.d_attn);
    ops::gemm(dx, true, a.attn, false, g(li.o), 1.0f, 1.0f);
    Tensor dq4 = s.dq.view({B, T, H, E}), dk4 = s.dk.view({B, T, G, E}),
           dv4 = s.dv.view({B, T, G, E});
    ops::attention_backward_from_lse(a.q.view({B, T, H, E}), a.k.view({B, T, G, E}),
                                     a.v.view({B, T, G, E}), a_slot.pos, a.attn_lse,
                                     s.d_attn.view({B, T, H, E}), scale, dq4, dk4, dv4,
                                     compute_dtype());
    Tensor dq3 = s.dq.view({N, H, E}), dk3 = s.dk.view({N, G, E});
    ops::rope_backward(dq3, flat_pos, theta);
    ops::rope_backward(dk3, flat_pos, theta);
    Tensor* dq_lin = &s.dq;
    Tensor* dk_lin = &s.dk;
    if (cfg_.qk_norm) {
      Tensor dqr = s.dq_raw.view({N * H, E}), dkr = s.dk_raw.view({N * G, E});
      // The gains are shared by every head; with tp each rank sees its heads only, so its part
      // is summed over the group before it joins the (accumulating) gradient.
      Tensor& gq = tp ? s.d_qnorm : g(li.q_norm);
      Tensor& gk = tp ? s.d_knorm : g(li.k_norm);
      if (tp) ops::fill(gq, 0.0f), ops::fill(gk, 0.0f);
      ops::rmsnorm_backward(a.q_raw.view({N * H, E}), w(li.q_norm), a.rstd_q,
                            s.dq.view({N * H, E}), dqr, gq);
      ops::rmsnorm_backward(a.k_raw.view({N * G, E}), w(li.k_norm), a.rstd_k,
                            s.dk.view({N * G, E}), dkr, gk);
      if (tp) {
        reduce(gq);
        reduce(gk);
        ops::axpy(1.0f, gq, g(li.q_norm));
        ops::axpy(1.0f, gk, g(li.k_norm));
      }
      dq_lin = &s.dq_raw;
      dk_lin = &s.dk_raw;
    }
    if (cfg_.qkv_bias) {
      ops::bias_backward(*dq_lin, g(li.q_bias));
      ops::bias_backward(*dk_lin, g(li.k_bias));
      ops::bias_backward(s.dv, g(li.v_bias));
    }
    const Tensor dq = operand(*dq_lin, s.c_q), dk = operand(*dk_lin, s.c_k),
                 dv = operand(s.dv, s.c_v);
    ops::gemm(dq, false, wc(li.q), false, s.d_xn);
    ops::gemm(dk, false, wc(li.k), false, s.d_xn, 1.0f, 1.0f);
    ops::gemm(dv, false, wc(li.v), false, s.d_xn, 1.0f, 1.0f);
    ops::gemm(dq, true, a.xn1, false, g(li.q), 1.0f, 1.0f);
    ops::gemm(dk, true, a.xn1, false, g(li.k), 1.0f, 1.0f);
    ops::gemm(dv, true, a.xn1, false, g(li.v), 1.0f, 1.0f);
    reduce(s.d_xn);  // column-parallel input gradient: sum over the shards
    ops::rmsnorm_backward(a_slot.resid[static_cast<std::size_t>(l)], w(li.attn_norm), a.rstd1, s.d_xn, s.tmp, g(li.attn_norm));
    ops::axpy(1.0f, s.tmp, s.dx);  // dx is now dL/dx_in
    if (notify)
      for (std::size_t i : {li.attn_norm, li.q, li.k, li.v, li.o, li.mlp_norm, li.gate, li.up,
                            li.down, li.q_bias, li.k_bias, li.v_bias, li.q_norm, li.k_norm})
        if (i != LayerIndex::kAbsent) grad_hook_(i);
  }
  if (pp.first()) {
    ops::embedding_backward(s.dx, a_slot.ids.view({N}), g(embed_), vocab_range());
    if (notify) grad_hook_(embed_);
  } else {
    pp.send_prev(s.dx);
  }
}

void Transformer::logits(const Tensor& h_rows, Tensor& out) {
  const parallel::TensorParallel& tp = tensor_parallel();
  params_.refresh_compute();
  const Tensor h = operand(h_rows, head_h_c_);
  if (tp.size() == 1) {
    ops::gemm(h, false, wc(lm_head_), true, out);
    return;
  }
  Tensor local = logits_scratch(h_rows.dim(0));
  ops::gemm(h, false, wc(lm_head_), true, local);
  tp.gather_columns(local, out);
}

void Transformer::logits_backward(const Tensor& h_rows, const Tensor& d_logits, Tensor& d_h) {
  const parallel::TensorParallel& tp = tensor_parallel();
  const Tensor* dz = &d_logits;
  Tensor local;
  if (tp.size() > 1) {
    local = logits_scratch(h_rows.dim(0));
    tp.take_columns(d_logits, local);
    dz = &local;
  }
  shard_logits_backward(h_rows, *dz, d_h);
}

void Transformer::shard_logits(const Tensor& h_rows, Tensor& out) {
  params_.refresh_compute();
  ops::gemm(operand(h_rows, head_h_c_), false, wc(lm_head_), true, out);
}

void Transformer::shard_logits_backward(const Tensor& h_rows, const Tensor& d_logits, Tensor& d_h) {
  const Tensor dz = operand(d_logits, head_dz_c_);
  ops::gemm(dz, false, wc(lm_head_), false, d_h);
  ops::gemm(dz, true, operand(h_rows, head_h_c_), false, g(lm_head_), 1.0f, 1.0f);
  reduce(d_h);  // each shard's columns give a part of dL/dh
}

void Transformer::head_stats(const Tensor& h, const Tensor* targets, int64_t chunk,
                             backend::HeadStats& out) {
  params_.refresh_compute();
  parallel::vocab_parallel_head_stats(operand(h, head_h_c_), wc(lm_head_), targets, 1.0f, chunk,
                                      tensor_parallel(), out);
}

void Transformer::head_cross_entropy_backward(const Tensor& h, const Tensor& targets,
                                              const Tensor& lse, const Tensor& d_loss,
                                              int64_t chunk, Tensor& d_h) {
  parallel::vocab_parallel_cross_entropy_backward(operand(h, head_h_c_), wc(lm_head_), targets,
                                                  lse, d_loss, 1.0f, chunk, tensor_parallel(), d_h,
                                                  lm_head().grad);
}

Tensor Transformer::staged(Slot& s, const Tensor& kept) const {
  if (kept.dtype() == core::DType::F32) return kept;
  return s.stage.slice(0, kept.numel()).view(kept.shape());
}

void Transformer::keep_input(const Tensor& staged, Tensor& kept) const {
  if (staged.address() != kept.address()) ops::cast(staged, kept);
}

Tensor Transformer::operand_out(const Tensor& x, Tensor& buf) const {
  if (compute_dtype() == core::DType::F32) return x;
  if (buf.numel() < x.numel()) buf = Tensor::empty({x.numel()}, compute_dtype(), device());
  return buf.slice(0, x.numel()).view(x.shape());
}

Tensor Transformer::operand(const Tensor& x, Tensor& buf) const {
  if (compute_dtype() == core::DType::F32) return x;
  Tensor out = operand_out(x, buf);
  ops::cast(x, out);
  return out;
}

Tensor Transformer::on_device(const Tensor& x) const { return ops::on_device(x, device()); }

backend::VocabRange Transformer::vocab_range() const {
  return {vocab_ * tensor_parallel().rank(), tensor_parallel().size() > 1 ? cfg_.vocab_size : 0};
}

Tensor Transformer::logits_scratch(int64_t rows) {
  if (head_local_.numel() < rows * vocab_) head_local_ = alloc({rows, vocab_});
  return head_local_.view({head_local_.numel()}).slice(0, rows * vocab_).view({rows, vocab_});
}

}  // namespace opd::model
