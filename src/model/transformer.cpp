#include "model/transformer.hpp"

#include <cmath>
#include <string>

#include "backend/ops.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"

namespace opd::model {

namespace ops = opd::backend;
using core::Shape;

KVCache::KVCache(const ModelConfig& cfg, int64_t batch_, int64_t capacity_)
    : batch(batch_), capacity(capacity_) {
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    k.push_back(Tensor::zeros({batch, capacity, cfg.n_kv_heads, cfg.head_size()}));
    v.push_back(Tensor::zeros({batch, capacity, cfg.n_kv_heads, cfg.head_size()}));
  }
}

Transformer::Transformer(const ModelConfig& cfg) : cfg_(cfg) {
  cfg_.validate("model");
  const int64_t D = cfg_.d_model, V = cfg_.vocab_size, F = cfg_.d_ff, E = cfg_.head_size();
  embed_ = params_.add("model.embed_tokens.weight", {V, D}, true);
  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerIndex li{};
    li.attn_norm = params_.add(p + "input_layernorm.weight", {D}, false);
    li.q = params_.add(p + "self_attn.q_proj.weight", {cfg_.q_size(), D}, true);
    li.k = params_.add(p + "self_attn.k_proj.weight", {cfg_.kv_size(), D}, true);
    li.v = params_.add(p + "self_attn.v_proj.weight", {cfg_.kv_size(), D}, true);
    if (cfg_.qkv_bias) {
      li.q_bias = params_.add(p + "self_attn.q_proj.bias", {cfg_.q_size()}, false);
      li.k_bias = params_.add(p + "self_attn.k_proj.bias", {cfg_.kv_size()}, false);
      li.v_bias = params_.add(p + "self_attn.v_proj.bias", {cfg_.kv_size()}, false);
    }
    if (cfg_.qk_norm) {
      li.q_norm = params_.add(p + "self_attn.q_norm.weight", {E}, false);
      li.k_norm = params_.add(p + "self_attn.k_norm.weight", {E}, false);
    }
    li.o = params_.add(p + "self_attn.o_proj.weight", {D, cfg_.q_size()}, true);
    li.mlp_norm = params_.add(p + "post_attention_layernorm.weight", {D}, false);
    li.gate = params_.add(p + "mlp.gate_proj.weight", {F, D}, true);
    li.up = params_.add(p + "mlp.up_proj.weight", {F, D}, true);
    li.down = params_.add(p + "mlp.down_proj.weight", {D, F}, true);
    layers_.push_back(li);
  }
  final_norm_ = params_.add("model.norm.weight", {D}, false);
  lm_head_ = cfg_.tie_embeddings ? embed_ : params_.add("lm_head.weight", {V, D}, true);
}

void Transformer::init_weights(uint64_t seed) {
  const float out_scale = 1.0f / std::sqrt(2.0f * static_cast<float>(cfg_.n_layers));
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Param& p = params_[i];
    float* x = p.value.data<float>();
    const auto& n = p.name;
    auto ends_with = [&](const char* s) {
      std::string t(s);
      return n.size() >= t.size() && n.compare(n.size() - t.size(), t.size(), t) == 0;
    };
    if (p.value.ndim() == 1) {  // norm gains 1, biases 0
      const float v = ends_with(".bias") ? 0.0f : 1.0f;
      for (int64_t j = 0; j < p.value.numel(); ++j) x[j] = v;
      continue;
    }
    float std = static_cast<float>(cfg_.init_std);
    if (ends_with("o_proj.weight") || ends_with("down_proj.weight")) std *= out_scale;
    core::RngStream rng(seed, core::RngPurpose::Init, i);
    for (int64_t j = 0; j < p.value.numel(); ++j) x[j] = std * rng.normal();
  }
}

void Transformer::ensure_buffers(int64_t B, int64_t T, bool keep) {
  if (B == buf_batch_ && T == buf_seq_ && keep == buf_keep_) return;
  const int64_t N = B * T, D = cfg_.d_model, F = cfg_.d_ff, H = cfg_.n_heads;
  const int64_t QS = cfg_.q_size(), KS = cfg_.kv_size();
  auto make_layer = [&]() {
    LayerActs a;
    a.xn1 = Tensor::empty({N, D});
    a.rstd1 = Tensor::empty({N});
    if (cfg_.qk_norm) {
      a.q_raw = Tensor::empty({N, QS});
      a.k_raw = Tensor::empty({N, KS});
      a.rstd_q = Tensor::empty({N * H});
      a.rstd_k = Tensor::empty({N * cfg_.n_kv_heads});
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
  const int64_t H = cfg_.n_heads, G = cfg_.n_kv_heads, E = cfg_.head_size();
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
  ops::embedding_forward(w(embed_), flat_ids, resid_[0]);
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
    ops::add(x_in, tmp_, a.x_mid);

    ops::rmsnorm_forward(a.x_mid, w(li.mlp_norm), eps, a.xn2, keep ? &a.rstd2 : nullptr);
    ops::gemm(a.xn2, false, w(li.gate), true, a.gate);
    ops::gemm(a.xn2, false, w(li.up), true, a.up);
    ops::swiglu_forward(a.gate, a.up, a.act);
    ops::gemm(a.act, false, w(li.down), true, tmp_);
    ops::add(a.x_mid, tmp_, x_out);
  }
  const Tensor& last = resid_[keep ? cfg_.n_layers : cfg_.n_layers % 2];
  ops::rmsnorm_forward(last, w(final_norm_), eps, h_, &rstd_f_);
  return h_;
}

void Transformer::backward(const Tensor& d_h) {
  OPD_CHECK(have_activations_, "backward without a forward that kept activations");
  const int64_t B = batch_, T = seq_, N = B * T;
  const int64_t H = cfg_.n_heads, G = cfg_.n_kv_heads, E = cfg_.head_size();
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
      ops::rmsnorm_backward(a.q_raw.view({N * H, E}), w(li.q_norm), a.rstd_q,
                            s.dq.view({N * H, E}), dqr, g(li.q_norm));
      ops::rmsnorm_backward(a.k_raw.view({N * G, E}), w(li.k_norm), a.rstd_k,
                            s.dk.view({N * G, E}), dkr, g(li.k_norm));
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
    ops::rmsnorm_backward(resid_[l], w(li.attn_norm), a.rstd1, s.d_xn, s.tmp, g(li.attn_norm));
    ops::axpy(1.0f, s.tmp, s.dx);  // dx is now dL/dx_in
  }
  ops::embedding_backward(s.dx, ids_.view({N}), g(embed_));
}

void Transformer::logits(const Tensor& h_rows, Tensor& out) {
  ops::gemm(h_rows, false, w(lm_head_), true, out);
}

}  // namespace opd::model
