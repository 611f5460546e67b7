#include "model/transformer.hpp"

#include <cmath>
#include <string>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"

namespace opd::model {

namespace ops = opd::backend;
using core::Shape;

KVCache::KVCache(const ModelConfig& cfg, int64_t batch_, int64_t capacity_, int tp)
    : batch(batch_), capacity(capacity_) {
  const int64_t G = cfg.n_kv_heads / tp;
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    k.push_back(Tensor::zeros({batch, capacity, G, cfg.head_size()}));
    v.push_back(Tensor::zeros({batch, capacity, G, cfg.head_size()}));
  }
}

namespace {
constexpr int kRows = 0, kCols = 1;  // the sharded axis of a [out, in] weight
}  // namespace

Transformer::Transformer(const ModelConfig& cfg, parallel::TensorParallel tp)
    : cfg_(cfg), params_(std::move(tp)) {
  cfg_.validate("model");
  const int P = tensor_parallel().size();
  cfg_.check_tensor_parallel(P, "model", "parallel");
  heads_ = cfg_.n_heads / P;
  kv_heads_ = cfg_.n_kv_heads / P;
  ff_ = cfg_.d_ff / P;
  vocab_ = cfg_.vocab_size / P;
  const int64_t D = cfg_.d_model, V = cfg_.vocab_size, F = cfg_.d_ff, E = cfg_.head_size();
  embed_ = params_.add("model.embed_tokens.weight", {V, D}, true, kRows);
  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerIndex li{};
    li.attn_norm = params_.add(p + "input_layernorm.weight", {D}, false);
    li.q = params_.add(p + "self_attn.q_proj.weight", {cfg_.q_size(), D}, true, kRows);
    li.k = params_.add(p + "self_attn.k_proj.weight", {cfg_.kv_size(), D}, true, kRows);
    li.v = params_.add(p + "self_attn.v_proj.weight", {cfg_.kv_size(), D}, true, kRows);
    if (cfg_.qkv_bias) {
      li.q_bias = params_.add(p + "self_attn.q_proj.bias", {cfg_.q_size()}, false, kRows);
      li.k_bias = params_.add(p + "self_attn.k_proj.bias", {cfg_.kv_size()}, false, kRows);
      li.v_bias = params_.add(p + "self_attn.v_proj.bias", {cfg_.kv_size()}, false, kRows);
    }
    if (cfg_.qk_norm) {
      li.q_norm = params_.add(p + "self_attn.q_norm.weight", {E}, false);
      li.k_norm = params_.add(p + "self_attn.k_norm.weight", {E}, false);
    }
    li.o = params_.add(p + "self_attn.o_proj.weight", {D, cfg_.q_size()}, true, kCols);
    li.mlp_norm = params_.add(p + "post_attention_layernorm.weight", {D}, false);
    li.gate = params_.add(p + "mlp.gate_proj.weight", {F, D}, true, kRows);
    li.up = params_.add(p + "mlp.up_proj.weight", {F, D}, true, kRows);
    li.down = params_.add(p + "mlp.down_proj.weight", {D, F}, true, kCols);
    layers_.push_back(li);
  }
  final_norm_ = params_.add("model.norm.weight", {D}, false);
  lm_head_ = cfg_.tie_embeddings ? embed_ : params_.add("lm_head.weight", {V, D}, true, kRows);
}

void Transformer::init_weights(uint64_t seed) {
  const float out_scale = 1.0f / std::sqrt(2.0f * static_cast<float>(cfg_.n_layers));
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Param& p = params_[i];
    // The whole parameter is drawn and this rank's shard kept, so every layout initialises the
    // same model.
    Tensor whole = p.sharded() ? Tensor::empty(p.global_shape) : p.value;
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
      core::RngStream rng(seed, core::RngPurpose::Init, i);
      for (int64_t j = 0; j < whole.numel(); ++j) x[j] = std * rng.normal();
    }
    if (p.sharded()) take_shard(whole, p);
  }
}

void Transformer::ensure_buffers(int64_t B, int64_t T, bool keep) {
  if (B == buf_batch_ && T == buf_seq_ && keep == buf_keep_) return;
  const int64_t N = B * T, D = cfg_.d_model, F = ff_, H = heads_;
  const int64_t QS = heads_ * cfg_.head_size(), KS = kv_heads_ * cfg_.head_size();
  auto make_layer = [&]() {
    LayerActs a;
    a.xn1 = Tensor::empty({N, D});
    a.rstd1 = Tensor::empty({N});
    if (cfg_.qk_norm) {
      a.q_raw = Tensor::empty({N, QS});
      a.k_raw = Tensor::empty({N, KS});
      a.rstd_q = Tensor::empty({N * H});
      a.rstd_k = Tensor::empty({N * kv_heads_});
    }
    a.q = Tensor::empty({N, QS});
    a.k = Tensor::empty({N, KS});
    a.v = Tensor::empty({N, KS});
    if (keep) a.probs = Tensor::empty({B, H, T, T});
    a.attn = Tensor::empty({N, QS});
    a.x_mid = Tensor::empty({N, D});
    a.xn2 = Tensor::empty({N, D});
    a.rstd2 = Tensor::empty({N});
    a.gate = Tensor::empty({N, F});
    a.up = Tensor::empty({N, F});
    a.act = Tensor::empty({N, F});
    return a;
  };
  const int64_t L = cfg_.n_layers;
  resid_.clear();
  acts_.clear();
  for (int64_t i = 0; i < (keep ? L + 1 : 2); ++i) resid_.push_back(Tensor::empty({N, D}));
  for (int64_t i = 0; i < (keep ? L : 1); ++i) acts_.push_back(make_layer());
  h_ = Tensor::empty({N, D});
  rstd_f_ = Tensor::empty({N});
  tmp_ = Tensor::empty({N, D});
  ws_ = Workspace{};
  if (keep) {
    ws_.dx = Tensor::empty({N, D});
    ws_.tmp = Tensor::empty({N, D});
    ws_.d_xn = Tensor::empty({N, D});
    ws_.d_attn = Tensor::empty({N, QS});
    ws_.dq = Tensor::empty({N, QS});
    ws_.dk = Tensor::empty({N, KS});
    ws_.dv = Tensor::empty({N, KS});
    if (cfg_.qk_norm) {
      ws_.dq_raw = Tensor::empty({N, QS});
      ws_.dk_raw = Tensor::empty({N, KS});
    }
    ws_.d_act = Tensor::empty({N, F});
    ws_.d_gate = Tensor::empty({N, F});
    ws_.d_up = Tensor::empty({N, F});
    if (cfg_.qk_norm && tensor_parallel().size() > 1) {
      ws_.d_qnorm = Tensor::empty({cfg_.head_size()});
      ws_.d_knorm = Tensor::empty({cfg_.head_size()});
    }
  }
  buf_batch_ = B;
  buf_seq_ = T;
  buf_keep_ = keep;
}

const Tensor& Transformer::forward(const Tensor& ids, const Tensor& pos, bool keep,
                                   KVCache* cache) {
  OPD_CHECK(ids.ndim() == 2 && pos.shape() == ids.shape(), "forward: ids ", ids.describe(),
            " pos ", pos.describe());
  OPD_CHECK(!(keep && cache), "training forward does not use a KV cache");
  const int64_t B = ids.dim(0), T = ids.dim(1), N = B * T;
  const int64_t H = heads_, G = kv_heads_, E = cfg_.head_size();
  const float eps = static_cast<float>(cfg_.norm_eps);
  const float theta = static_cast<float>(cfg_.rope_theta);
  const float scale = 1.0f / std::sqrt(static_cast<float>(E));
  if (cache) OPD_CHECK(cache->batch == B, "KV cache batch ", cache->batch, " != ", B);
  ensure_buffers(B, T, keep);
  ids_ = ids;
  pos_ = pos;
  batch_ = B;
  seq_ = T;
  have_activations_ = keep;

  const Tensor flat_ids = ids.view({N});
  const Tensor flat_pos = pos.view({N});
  ops::embedding_forward(w(embed_), flat_ids, resid_[0], vocab_range());
  reduce(resid_[0]);  // each id's row lives on one vocabulary shard
  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    const LayerIndex& li = layers_[static_cast<std::size_t>(l)];
    LayerActs& a = acts_[keep ? static_cast<std::size_t>(l) : 0];
    Tensor& x_in = resid_[keep ? l : l % 2];
    Tensor& x_out = resid_[keep ? l + 1 : (l + 1) % 2];

    ops::rmsnorm_forward(x_in, w(li.attn_norm), eps, a.xn1, keep ? &a.rstd1 : nullptr);
    Tensor& q_lin = cfg_.qk_norm ? a.q_raw : a.q;
    Tensor& k_lin = cfg_.qk_norm ? a.k_raw : a.k;
    ops::gemm(a.xn1, false, w(li.q), true, q_lin);
    ops::gemm(a.xn1, false, w(li.k), true, k_lin);
    ops::gemm(a.xn1, false, w(li.v), true, a.v);
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
    Tensor out4 = a.attn.view({B, T, H, E});
    if (cache) {
      Tensor& kc = cache->k[static_cast<std::size_t>(l)];
      Tensor& vc = cache->v[static_cast<std::size_t>(l)];
      Tensor kc3 = kc.view({B, cache->capacity, G * E}), vc3 = vc.view({B, cache->capacity, G * E});
      ops::scatter_rows(a.k.view({B, T, G * E}), pos, kc3);
      ops::scatter_rows(a.v.view({B, T, G * E}), pos, vc3);
      ops::attention_forward(q4, kc, vc, pos, scale, out4, nullptr);
    } else {
      ops::attention_forward(q4, a.k.view({B, T, G, E}), a.v.view({B, T, G, E}), pos, scale,
                             out4, keep ? &a.probs : nullptr);
    }
    ops::gemm(a.attn, false, w(li.o), true, tmp_);
    reduce(tmp_);  // row-parallel: sum of the heads' shares
    ops::add(x_in, tmp_, a.x_mid);

    ops::rmsnorm_forward(a.x_mid, w(li.mlp_norm), eps, a.xn2, keep ? &a.rstd2 : nullptr);
    ops::gemm(a.xn2, false, w(li.gate), true, a.gate);
    ops::gemm(a.xn2, false, w(li.up), true, a.up);
    ops::swiglu_forward(a.gate, a.up, a.act);
    ops::gemm(a.act, false, w(li.down), true, tmp_);
    reduce(tmp_);  // row-parallel: sum of the hidden units' shares
    ops::add(a.x_mid, tmp_, x_out);
  }
  const Tensor& last = resid_[keep ? cfg_.n_layers : cfg_.n_layers % 2];
  ops::rmsnorm_forward(last, w(final_norm_), eps, h_, &rstd_f_);
  return h_;
}

void Transformer::backward(const Tensor& d_h) {
  OPD_CHECK(have_activations_, "backward without a forward that kept activations");
  const int64_t B = batch_, T = seq_, N = B * T;
  const int64_t H = heads_, G = kv_heads_, E = cfg_.head_size();
  const bool tp = tensor_parallel().size() > 1;
  const float theta = static_cast<float>(cfg_.rope_theta);
  const float scale = 1.0f / std::sqrt(static_cast<float>(E));
  OPD_CHECK(d_h.numel() == N * cfg_.d_model, "backward: d_h ", d_h.describe());
  Workspace& s = ws_;
  const Tensor flat_pos = pos_.view({N});

  ops::rmsnorm_backward(resid_[cfg_.n_layers], w(final_norm_), rstd_f_, d_h, s.dx, g(final_norm_));
  for (int64_t l = cfg_.n_layers - 1; l >= 0; --l) {
    const LayerIndex& li = layers_[static_cast<std::size_t>(l)];
    LayerActs& a = acts_[static_cast<std::size_t>(l)];
    // MLP block: x_out = x_mid + act W_down^T.
    ops::gemm(s.dx, false, w(li.down), false, s.d_act);
    ops::gemm(s.dx, true, a.act, false, g(li.down), 1.0f, 1.0f);
    ops::swiglu_backward(a.gate, a.up, s.d_act, s.d_gate, s.d_up);
    ops::gemm(s.d_gate, false, w(li.gate), false, s.d_xn);
    ops::gemm(s.d_up, false, w(li.up), false, s.d_xn, 1.0f, 1.0f);
    ops::gemm(s.d_gate, true, a.xn2, false, g(li.gate), 1.0f, 1.0f);
    ops::gemm(s.d_up, true, a.xn2, false, g(li.up), 1.0f, 1.0f);
    reduce(s.d_xn);  // column-parallel input gradient: sum over the shards
    ops::rmsnorm_backward(a.x_mid, w(li.mlp_norm), a.rstd2, s.d_xn, s.tmp, g(li.mlp_norm));
    ops::axpy(1.0f, s.tmp, s.dx);  // dx is now dL/dx_mid
    // Attention block: x_mid = x_in + attn W_o^T.
    ops::gemm(s.dx, false, w(li.o), false, s.d_attn);
    ops::gemm(s.dx, true, a.attn, false, g(li.o), 1.0f, 1.0f);
    Tensor dq4 = s.dq.view({B, T, H, E}), dk4 = s.dk.view({B, T, G, E}),
           dv4 = s.dv.view({B, T, G, E});
    ops::attention_backward(a.q.view({B, T, H, E}), a.k.view({B, T, G, E}),
                            a.v.view({B, T, G, E}), a.probs, s.d_attn.view({B, T, H, E}), scale,
                            dq4, dk4, dv4);
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
    ops::gemm(*dq_lin, false, w(li.q), false, s.d_xn);
    ops::gemm(*dk_lin, false, w(li.k), false, s.d_xn, 1.0f, 1.0f);
    ops::gemm(s.dv, false, w(li.v), false, s.d_xn, 1.0f, 1.0f);
    ops::gemm(*dq_lin, true, a.xn1, false, g(li.q), 1.0f, 1.0f);
    ops::gemm(*dk_lin, true, a.xn1, false, g(li.k), 1.0f, 1.0f);
    ops::gemm(s.dv, true, a.xn1, false, g(li.v), 1.0f, 1.0f);
    reduce(s.d_xn);  // column-parallel input gradient: sum over the shards
    ops::rmsnorm_backward(resid_[l], w(li.attn_norm), a.rstd1, s.d_xn, s.tmp, g(li.attn_norm));
    ops::axpy(1.0f, s.tmp, s.dx);  // dx is now dL/dx_in
  }
  ops::embedding_backward(s.dx, ids_.view({N}), g(embed_), vocab_range());
}

void Transformer::logits(const Tensor& h_rows, Tensor& out) {
  const parallel::TensorParallel& tp = tensor_parallel();
  if (tp.size() == 1) {
    ops::gemm(h_rows, false, w(lm_head_), true, out);
    return;
  }
  Tensor local = local_logits(h_rows.dim(0));
  ops::gemm(h_rows, false, w(lm_head_), true, local);
  tp.gather_columns(local, out);
}

void Transformer::logits_backward(const Tensor& h_rows, const Tensor& d_logits, Tensor& d_h) {
  const parallel::TensorParallel& tp = tensor_parallel();
  const Tensor* dz = &d_logits;
  Tensor local;
  if (tp.size() > 1) {
    local = local_logits(h_rows.dim(0));
    tp.take_columns(d_logits, local);
    dz = &local;
  }
  ops::gemm(*dz, false, w(lm_head_), false, d_h);
  ops::gemm(*dz, true, h_rows, false, g(lm_head_), 1.0f, 1.0f);
  reduce(d_h);  // each shard's columns give a part of dL/dh
}

backend::VocabRange Transformer::vocab_range() const {
  return {vocab_ * tensor_parallel().rank(), tensor_parallel().size() > 1 ? cfg_.vocab_size : 0};
}

Tensor Transformer::local_logits(int64_t rows) {
  if (head_local_.numel() < rows * vocab_) head_local_ = Tensor::empty({rows, vocab_});
  return head_local_.view({head_local_.numel()}).slice(0, rows * vocab_).view({rows, vocab_});
}

}  // namespace opd::model
