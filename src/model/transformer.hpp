// Transformer: the Llama/Qwen-family decoder (RMSNorm, RoPE, GQA, SwiGLU, optional QKV bias,
// optional QK-norm, tied or untied embeddings), written once against backend/ops.hpp.
//
// forward() maps token ids to the final normalised hidden states h [B*T, D]; the LM head is
// applied by the caller through the vocab-chunked head ops (so [tokens, vocab] logits never
// exist in training or scoring). With keep_activations the activations are kept and backward()
// turns dL/dh into parameter gradients. With a KVCache, keys and values are written into the
// cache at each token's absolute position, which is how prefill and incremental decode work.
//
// Tensor parallelism (DESIGN.md §6): with a group of tp ranks, q/k/v and gate/up are
// column-parallel (each rank holds n_heads/tp query heads, n_kv_heads/tp kv heads, d_ff/tp
// hidden units), o_proj and down_proj row-parallel (their partial products are summed over the
// group: one all-reduce per block forward, one per block backward), and the embedding and LM head
// vocab-parallel. Norm gains are replicated; hidden states h are whole on every rank.
//
// Mixed precision (set_compute_dtype(BF16)): the f32 parameters stay the master
// weights; every GEMM reads a bf16 copy of its weight and bf16 activations (the normed inputs,
// attention output and SwiGLU output are kept in bf16 for the backward, the gradients flowing
// into a GEMM are rounded to bf16 just before it) and accumulates in f32 into an f32 result.
// Attention multiplies bf16-rounded q, k, v (and P, dO, dS) with f32 accumulation, tensor cores
// on a GPU (backend/ops.hpp); norms, RoPE, softmax statistics, residual streams and gradients
// stay f32.
//
// Pipeline parallelism: with pp stages each rank holds a contiguous range of layers; the first
// stage also the embedding, the last the final norm and the head. forward() receives its input
// from the previous stage and sends its output to the next (without waiting), and only the last
// stage returns h; backward() runs the other way. Each of several micro-batches in flight uses
// its own activation slot.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "backend/ops.hpp"
#include "backend/recording.hpp"
#include "core/tensor.hpp"
#include "model/model_config.hpp"
#include "model/parameters.hpp"
#include "parallel/pipeline_parallel.hpp"
#include "parallel/tensor_parallel.hpp"

namespace opd::model {

using core::Tensor;

// Keys and values of a model's layers (this stage's) for a batch of sequences, at absolute
// positions. Make one with Transformer::make_cache.
struct KVCache {
  KVCache(int64_t layers, int64_t batch, int64_t capacity, int64_t kv_heads, int64_t head_dim,
          core::Device device = core::Device::Host);
  int64_t batch = 0, capacity = 0;
  std::vector<Tensor> k, v;  // per layer [batch, capacity, kv_heads, head_dim]
};

// Where a model's shards live: its tensor-parallel group and its pipeline group, the device
// of its tensors and the precision of its GEMMs.
struct ModelParallel {
  parallel::TensorParallel tp;
  parallel::PipelineParallel pp;
  core::Device device = core::Device::Host;
  core::DType compute = core::DType::F32;
};

class Transformer {
 public:
  // tp: the tensor-parallel group this rank's shards belong to; pp: the pipeline group whose
  // stage this rank is (defaults: one rank, the whole model).
  // device: where parameters, activations and caches live (a CUDA device: tp = 1 so far).
  explicit Transformer(const ModelConfig& cfg, parallel::TensorParallel tp = {},
                       parallel::PipelineParallel pp = {}, core::Device device = core::Device::Host);
  Transformer(const ModelConfig& cfg, const ModelParallel& mp) : Transformer(cfg, mp.tp, mp.pp, mp.device) {
    set_compute_dtype(mp.compute);
  }
  core::Device device() const { return params_.device(); }

  const ModelConfig& config() const { return cfg_; }
  // F32 (the default) or BF16 mixed precision (above); set before the first forward.
  void set_compute_dtype(core::DType dtype);
  core::DType compute_dtype() const { return params_.compute_dtype(); }
  const parallel::TensorParallel& tensor_parallel() const { return params_.tensor_parallel(); }
  const parallel::PipelineParallel& pipeline() const { return params_.pipeline(); }
  // True on the stage that holds the head (and where forward() returns h).
  bool has_head() const { return pipeline().last(); }
  ParamSet& params() { return params_; }
  const ParamSet& params() const { return params_; }
  // The LM head weight [V, D] (this rank's vocabulary shard) and its gradient (the embedding's
  // when tied). Last stage only.
  Param& lm_head();

  // Normal(0, init_std) matrices (output projections scaled by 1/sqrt(2 n_layers)), unit norm
  // gains, zero biases. Deterministic in seed and independent of the layout: parameter i of
  // parameter_specs() is drawn whole from Philox stream i and this rank keeps its shard.
  void init_weights(uint64_t seed);

  // A KV cache for this rank's layers and kv heads.
  KVCache make_cache(int64_t batch, int64_t capacity) const;

  // ids [B, T] I32, pos [B, T] I32 (absolute positions; the query at pos p sees keys 0..p).
  // Returns h [B*T, D] on the last stage (valid until the next forward of the slot) and an
  // undefined tensor on the others. Every stage must call it (ids and pos are needed everywhere).
  const Tensor& forward(const Tensor& ids, const Tensor& pos, bool keep_activations,
                        KVCache* cache = nullptr, int slot = 0);
  // After forward(keep_activations = true) of the slot: accumulates parameter gradients from
  // d_h [B*T, D] (last stage; the others receive theirs from the next stage and pass any tensor).
  // last_pass: this is the update's last backward pass, so each parameter's gradient is final
  // once its layer is done; the gradient hook hears of it then.
  void backward(const Tensor& d_h, int slot = 0, bool last_pass = true);
  // Called with a parameter's index as soon as its gradient is final in the last backward pass
  // (data-parallel reduction overlapping the rest of the backward); empty: none.
  void set_gradient_hook(std::function<void(std::size_t)> hook) { grad_hook_ = std::move(hook); }

  // Full logits [M, V] for a few rows of h (decoding, blocks of response rows), logits =
  // h W_head^T (gathered over the vocabulary shards). Last stage only.
  void logits(const Tensor& h_rows, Tensor& out);
  // Back through logits(): given dL/dlogits [M, V] (whole on every rank), writes dL/dh_rows
  // [M, D] (overwrite) and accumulates this rank's shard of the head gradient.
  void logits_backward(const Tensor& h_rows, const Tensor& d_logits, Tensor& d_h_rows);
  // The same on this rank's vocabulary columns only (vocab_range(); the whole row when tp = 1):
  // logits [M, V/tp] and, back, d_logits [M, V/tp] -> d_h_rows [M, D] summed over the group.
  void shard_logits(const Tensor& h_rows, Tensor& out);
  void shard_logits_backward(const Tensor& h_rows, const Tensor& d_logits, Tensor& d_h_rows);
  // The head's statistics (log-sum-exp, target logit, entropy) over the whole vocabulary for
  // h [N, D] at temperature 1, in the model's compute precision (vocab-chunked, summed over the
  // vocabulary shards), and the backward of the weighted cross-entropy they give: d_h [N, D]
  // overwritten, the head's gradient accumulated. Last stage only.
  void head_stats(const Tensor& h, const Tensor* targets, int64_t chunk, backend::HeadStats& out);
  void head_cross_entropy_backward(const Tensor& h, const Tensor& targets, const Tensor& lse,
                                   const Tensor& d_loss, int64_t chunk, Tensor& d_h);
  // This rank's rows of the embedding and head (begin 0, total 0 when tp = 1).
  backend::VocabRange vocab_range() const;

 private:
  struct LayerIndex {
    std::size_t attn_norm, q, k, v, o, mlp_norm, gate, up, down;
    static constexpr std::size_t kAbsent = static_cast<std::size_t>(-1);
    std::size_t q_bias = kAbsent, k_bias = kAbsent, v_bias = kAbsent, q_norm = kAbsent,
                k_norm = kAbsent;
  };
  struct LayerActs {
    // attn_lse: each query row's attention log-sum-exp (the backward recomputes P from it, so
    // no T x T scores are kept). xn1, attn, xn2 and act are GEMM inputs: compute dtype.
    Tensor xn1, rstd1, q_raw, k_raw, rstd_q, rstd_k, q, k, v, attn_lse, attn, x_mid, xn2, rstd2,
        gate, up, act;
  };
  // One forward's activations, reallocated only when B, T or keep change (first touch of new
  // memory costs more than the arithmetic on these machines).
  struct Slot {
    int64_t buf_batch = -1, buf_seq = -1;
    bool buf_keep = false;
    std::vector<Tensor> resid;   // keep: L + 1 residual streams [N, D]; else 2, alternating
    std::vector<LayerActs> acts; // keep: one per layer; else one shared
    Tensor h, rstd_f, tmp;
    Tensor stage;                // bf16: the f32 attention output before its cast to a GEMM input
    Tensor ids, pos;             // what the forward saw (for backward)
    int64_t batch = 0, seq = 0;
    bool have_activations = false;
    uint64_t epoch = 0;              // which allocation of the buffers above (decode_key)
    backend::Recording decode_step;  // the recorded decode step of these buffers
  };
  struct Workspace {  // backward scratch, sized for the last backward's B, T
    int64_t rows = -1;
    Tensor dx, tmp, d_xn, d_attn, dq, dk, dv, dq_raw, dk_raw, d_act, d_gate, d_up;
    Tensor d_qnorm, d_knorm;  // tp > 1: this rank's part of the shared QK-norm gain gradients
    Tensor c_dx, c_gate, c_up, c_q, c_k, c_v;  // bf16: gradients rounded for their GEMMs
  };

  Slot& ensure_slot(int slot, int64_t batch, int64_t seq, bool keep);
  // The forward from the embedding (or the previous stage) to h (or the next stage).
  void forward_layers(Slot& s, bool keep, KVCache* cache);
  // ids and pos into the slot on the model's device.
  void take_inputs(Slot& s, const Tensor& ids, const Tensor& pos);
  // What a recorded decode step depends on: the slot's buffers, the cache, the weights.
  uint64_t decode_key(const Slot& s, const KVCache& cache) const;
  void ensure_workspace(int64_t rows);
  // Sums a row-parallel partial product (or a column-parallel input gradient) over the group.
  void reduce(Tensor& x) const { tensor_parallel().allreduce_sum(x); }
  // out = residual + in w^T summed over the tensor-parallel group (a row-parallel projection
  // joining the residual stream); s.tmp is its scratch.
  void add_projection(Slot& s, const Tensor& in, const Tensor& w, const Tensor& residual,
                      Tensor& out) const;
  Tensor logits_scratch(int64_t rows);      // [rows, V/tp]
  Tensor alloc(const core::Shape& shape) const {  // an activation buffer on the model's device
    return Tensor::empty(shape, core::DType::F32, device());
  }
  Tensor alloc_compute(const core::Shape& shape) const {  // a GEMM input kept for the backward
    return Tensor::empty(shape, compute_dtype(), device());
  }
  // Where an f32 result destined for the kept GEMM input `kept` is written: `kept` itself in
  // f32, else the slot's staging buffer; keep_input() then rounds it into `kept` (bf16).
  Tensor staged(Slot& s, const Tensor& kept) const;
  void keep_input(const Tensor& staged, Tensor& kept) const;
  // x as a GEMM operand: x itself in f32, else rounded to bf16 into `buf` (grown as needed).
  Tensor operand(const Tensor& x, Tensor& buf) const;
  // Where an op writes a GEMM operand the shape of x directly: x in f32, else `buf` in bf16.
  Tensor operand_out(const Tensor& x, Tensor& buf) const;
  // ids or positions on the model's device (copied when they come from the host).
  Tensor on_device(const Tensor& x) const;
  Tensor& w(std::size_t i) { return params_[i].value; }
  // The weight a GEMM reads: the bf16 compute copy in mixed precision, else the value.
  Tensor& wc(std::size_t i) {
    Param& p = params_[i];
    return p.compute.defined() ? p.compute : p.value;
  }
  Tensor& g(std::size_t i) { return params_[i].grad; }
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);

  ModelConfig cfg_;
  ParamSet params_;
  // This rank's share: query heads, kv heads, MLP hidden units, vocabulary rows, layers.
  int64_t heads_ = 0, kv_heads_ = 0, ff_ = 0, vocab_ = 0, layers_begin_ = 0;
  std::size_t embed_ = kNone, final_norm_ = kNone, lm_head_ = kNone;
  std::vector<LayerIndex> layers_;  // this stage's

  std::vector<Slot> slots_;
  uint64_t slot_epochs_ = 0;  // allocations of slot buffers so far
  Workspace ws_;
  Tensor head_local_;  // [M, V/tp] logits when tp > 1
  Tensor head_h_c_, head_dz_c_;  // bf16: the head's operands
  Tensor none_;        // what forward() returns on stages without the head
  std::function<void(std::size_t)> grad_hook_;
};

}  // namespace opd::model
