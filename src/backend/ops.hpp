// The op set: every numeric kernel the model, objectives and diagnostics use, declared once.
// Model code is written against these functions only and never branches on device; each call
// dispatches on the device of its tensors to backend/cpu (Kokkos + OpenBLAS) or backend/cuda.
//
// Conventions
//  - Tensors are contiguous row-major. Unless noted, float tensors are F32 and id tensors I32.
//  - "overwrite" outputs are fully written; "accumulate" outputs are added into (gradients of
//    parameters accumulate across micro-batches, so their backward ops add).
//  - Linear weights use the Hugging Face layout [out_features, in_features].
//  - Shapes in comments: N = rows (tokens), D = features, V = vocabulary, B = batch,
//    T = query length, S = key length, H = query heads, G = key/value heads (H % G == 0), E = head dim.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace opd::backend {

using core::Tensor;

// ---- runtime -----------------------------------------------------------------------------
// Starts Kokkos (and CUDA where built) for the lifetime of the object; create one in main().
class Runtime {
 public:
  Runtime();
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;
};
// Number of BLAS threads (OpenBLAS); 0 leaves the library default.
void set_blas_threads(int n);
int blas_threads();
// Makes CUDA device `index` the one device tensors live on; false when there is none (or opd
// was built without CUDA).
bool use_cuda_device(int index = 0);
// The active CUDA device's name (e.g. "NVIDIA H100 80GB HBM3"); "" without one.
std::string cuda_device_name();
// Waits for the work queued on `device` (timing); nothing to wait for on the host.
void synchronize(core::Device device);

// ---- elementwise and copies ----------------------------------------------------------------
void fill(Tensor& x, float value);                             // overwrite; F32 or I32
void copy(const Tensor& src, Tensor& dst);                     // same dtype and numel
// x on `device`: x itself when it lives there, else a copy (host <-> GPU staging of small inputs
// and results; an undefined x stays undefined).
Tensor on_device(const Tensor& x, core::Device device);
// Converts between F32 and BF16 (either way; same numel and device). To bf16 rounds to nearest,
// ties to even (core/bf16.hpp), bit-identical on every backend; to f32 is exact.
void cast(const Tensor& src, Tensor& dst);
void scale(Tensor& x, float alpha);                            // x *= alpha
void axpy(float alpha, const Tensor& x, Tensor& y);            // y += alpha * x
void add(const Tensor& a, const Tensor& b, Tensor& out);       // out = a + b (out may alias a or b)
void add_bias(Tensor& x, const Tensor& bias);                  // x[N, D] += bias[D]
void bias_backward(const Tensor& dy, Tensor& dbias);           // dbias[D] += sum_n dy[N, D]
double sum_squares(const Tensor& x);                           // sum of x^2 in double

// ---- matrix products (OpenBLAS / cuBLASLt) -------------------------------------------------
// c = alpha * op(a) @ op(b) + beta * c, with op(x) = x or x^T; a, b, c are 2-d (or viewed so).
// a and b are both F32 or both BF16 (mixed precision: bf16 products are exact in f32 and are
// accumulated in f32); c is F32.
void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
          float alpha = 1.0f, float beta = 0.0f);
// out [M, N] = residual + op(a) @ op(b): a projection added to the residual stream in one
// step. residual and out are F32 and may be the same tensor; a and b as for gemm. scratch
// [M, N] F32 may hold the product (the CPU forms it there, then adds; cuBLASLt adds the residual
// in its epilogue, saving that pass, and leaves scratch as it was), so the result is
// fl(residual + fl(product)) either way.
void gemm_residual(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                   const Tensor& residual, Tensor& out, Tensor& scratch);
// Batched: a [L, ., .], b [L, ., .], c [L, ., .], the same per-matrix rule for each of L.
void gemm_batched(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                  float alpha = 1.0f, float beta = 0.0f);

// ---- vocabulary-parallel shards ---------------------------------------------------------------
// A table or head of V rows may hold rows [begin, begin + V) of a larger one of `total` rows
// (tensor parallelism shards the vocabulary). total = 0: it is the whole vocabulary. Ids and
// targets stay global: an id in [0, total) outside the shard selects nothing here.
struct VocabRange {
  int64_t begin = 0, total = 0;
};

// ---- embedding -----------------------------------------------------------------------------
// [V,D],[N] -> [N,D]; with a shard, rows of ids outside it are written as zeros.
void embedding_forward(const Tensor& table, const Tensor& ids, Tensor& out,
                       const VocabRange& range = {});
// Accumulate; with a shard, ids outside it add nothing.
void embedding_backward(const Tensor& d_out, const Tensor& ids, Tensor& d_table,
                        const VocabRange& range = {});

// ---- RMSNorm: y = x / rms(x) * w, rms(x) = sqrt(mean(x^2) + eps), row-wise over D -----------
// rstd [N] (may be null) receives 1/rms for the backward. y may be bf16 (a GEMM operand in
// mixed precision): the f32 result rounded as cast() rounds.
void rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, Tensor& y, Tensor* rstd);
// dx overwrite, dw accumulate.
void rmsnorm_backward(const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dy,
                      Tensor& dx, Tensor& dw);

// ---- rotary position embedding (Hugging Face "rotate_half" convention) ---------------------
// x [N, H, E] rotated in place: for i < E/2, the pair (x_i, x_{i+E/2}) turns by angle
// pos[n] * theta^(-2i/E). pos [N] I32. The backward turns by the opposite angle.
void rope_forward(Tensor& x, const Tensor& pos, float theta);
void rope_backward(Tensor& dx, const Tensor& pos, float theta);

// ---- SwiGLU: out = silu(gate) * up ---------------------------------------------------------
// out, and d_gate with d_up, may be bf16 (GEMM operands in mixed precision): the f32 results
// rounded as cast() rounds.
void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& out);
void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& d_out, Tensor& d_gate,
                     Tensor& d_up);  // overwrite both

// ---- causal grouped-query attention ------------------------------------------------------
// q [B, T, H, E]; k, v [B, S, G, E]; q_pos [B, T] I32 the absolute position of each query.
// Query (b, t) attends to keys j with j <= q_pos[b, t] (j < S): training uses q_pos = t, a
// KV-cache decode step uses q_pos = the sequence's current length. Head h reads kv head
// h / (H / G). Scores = scale * q k^T, softmax over the visible keys, out = P v.
// probs [B, H, T, S] (may be null) keeps P for the backward; lse [B, H, T] (may be null) keeps
// each query row's log-sum-exp of its visible scaled scores instead (-inf for a row that sees no
// key), all that attention_backward_from_lse needs besides q, k and v: O(T) values per head
// rather than the T x S of P.
// operands = BF16 (mixed precision) permits bf16 arithmetic: q, k, v (and the backward's d_out)
// rounded to bf16 and multiplied with f32 accumulation, P and dS rounded to bf16 before their
// products, as tensor cores do; softmax, its statistics and every output stay f32. The CPU rounds
// the inputs and computes the rest in f32; the GPU runs its tensor-core kernels where the device
// and head size allow and the f32 kernels otherwise (and for decode steps). F32 is exact f32.
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_pos,
                       float scale, Tensor& out, Tensor* probs, Tensor* lse = nullptr,
                       core::DType operands = core::DType::F32);
// dq, dk, dv overwrite (dk, dv sum over the query heads sharing a kv head).
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,
                        const Tensor& d_out, float scale, Tensor& dq, Tensor& dk, Tensor& dv);
// The same with P recomputed block by block from q, k, the positions and the forward's lse.
void attention_backward_from_lse(const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& q_pos, const Tensor& lse, const Tensor& d_out,
                                 float scale, Tensor& dq, Tensor& dk, Tensor& dv,
                                 core::DType operands = core::DType::F32);

// ---- KV cache ---------------------------------------------------------------------------------
// dst[b, pos[b, t], :] = src[b, t, :] for src [B, T, R], pos [B, T] I32 (0 <= pos < S), dst [B, S, R].
void scatter_rows(const Tensor& src, const Tensor& pos, Tensor& dst);

// ---- row-wise vocabulary ops on materialised logits x [N, V] ---------------------------------
void log_softmax_rows(const Tensor& x, Tensor& out);                 // [N, V]
void logsumexp_rows(const Tensor& x, Tensor& out);                   // [N]
void entropy_rows(const Tensor& x, Tensor& out);                     // [N], of softmax(x)
// The k largest of each row, in descending order (ties: lower id first). vals F32, ids I32 [N, k].
void topk_rows(const Tensor& x, int k, Tensor& vals, Tensor& ids);

// ---- vocabulary-chunked LM head ------------------------------------------------------------
// Rows h [N, D] against the head w [V, D]: logits = (h w^T) / temperature, produced chunk
// columns at a time so that at most [rows_block, chunk] fp32 logits exist at once.
struct HeadStats {
  Tensor lse;           // [N]      log-sum-exp of the logits             (required)
  Tensor target_logit;  // [N]      logit at targets[n]                    (optional; needs targets)
  Tensor entropy;       // [N]      entropy of softmax(logits)             (optional)
};
// With a vocabulary shard (range), the outputs are this shard's: log-sum-exp and entropy over
// its rows, and target_logit 0 where the target lies in another shard (parallel/ combines them).
void lm_head_stats(const Tensor& h, const Tensor& w, const Tensor* targets, float temperature,
                   int64_t chunk, HeadStats& out, const VocabRange& range = {});
// Backward of sum_n d_loss[n] * (lse[n] - target_logit[n]), i.e. cross-entropy weighted per row
// (rows with d_loss 0 or targets < 0 contribute nothing). dh overwrite, dw accumulate.
// With a vocabulary shard, lse is the global one and dh this shard's part of the sum (a row
// whose target lies in another shard contributes its softmax part only).
void lm_head_cross_entropy_backward(const Tensor& h, const Tensor& w, const Tensor& targets,
                                    const Tensor& lse, const Tensor& d_loss, float temperature,
                                    int64_t chunk, Tensor& dh, Tensor& dw,
                                    const VocabRange& range = {});

// ---- gathering ---------------------------------------------------------------------------------
// out[n, i] = x[n, ids[n, i]] for x [N, V], ids [N, k] I32 (0 <= id < V), out [N, k].
void gather_cols(const Tensor& x, const Tensor& ids, Tensor& out);

// ---- distillation: per-token student/teacher quantities and objective gradients --------------
// A block of n response positions (rows). Row r holds the student's logits z_r [V] (temperature
// 1: p = softmax(z)), the sampled token y_r and the teacher's signal (DESIGN.md §3), with
// q = the teacher's distribution at its temperature (the caller applies tau_T before).
enum class Signal : uint8_t { Sampled, TopK, Full };
struct ShardRows;  // vocabulary-parallel rows: below

struct TeacherRows {
  Signal mode = Signal::Sampled;
  // Sampled: log q(y_r) [n]; entropy_q [n] H(q) and lse_q [n] (diagnostics; may be undefined).
  Tensor logq_y, entropy_q;
  // TopK: the student's top-k ids fixed at rollout [n, k] I32 with log q at them [n, k]; the
  // teacher's own top-k ids [n, k] I32 (descending q) with their log q [n, k].
  Tensor student_ids, logq_student_ids, teacher_ids, logq_teacher_ids;
  // Full: the teacher's logits (already divided by tau_T) [n, V].
  Tensor logits;
};

// Per-row quantities for advantages and the diagnostics of DESIGN.md §5. Every output is [n] F32
// and must be allocated by the caller; a quantity the signal mode cannot give is written as NaN.
//  logp_y, entropy_p           log p(y), H(p)
//  logq_y, entropy_q           log q(y) (all modes), H(q) (Full; Sampled passes its own through)
//  kl_full                     KL(p || q) exact (Full)
//  kl_topk                     KL(p_bar || q_bar) on the student's top-k ids S (TopK: the given
//                              ids; Full: the top diag_k of p), both renormalised on S
//  overlap_ratio               |S^p ∩ S^q| / k  (S^p, S^q the top-k sets; TopK: the given ids, k
//                              their count; Full: k = diag_k)
//  overlap_mass_p, _q          p(I), q(I) with I = S^p ∩ S^q
//  overlap_adv                 (1/|I|) sum_{v in I} p_hat(v) (log q_hat(v) - log p_hat(v)), p_hat and
//                              q_hat renormalised on I (0 when I is empty)
struct TokenStats {
  Tensor logp_y, entropy_p, logq_y, entropy_q, kl_full, kl_topk, overlap_ratio, overlap_mass_p,
      overlap_mass_q, overlap_adv;
};
// With `shard`, z holds this rank's vocabulary columns only (see ShardRows below).
void token_stats(const Tensor& z, const TeacherRows& teacher, const Tensor& y, int diag_k,
                 TokenStats& out, const ShardRows* shard = nullptr);

enum class ObjectiveKind : uint8_t { PgSampled, PgTopK, TopKRkl, FullRkl, Fkl, Jsd, Sft };
enum class Support : uint8_t { Student, Teacher, Intersection, Union, SymDiff };
enum class SupportWeight : uint8_t { StudentP, TeacherP, Uniform };

struct ObjectiveArgs {
  ObjectiveKind kind = ObjectiveKind::PgSampled;
  Support support = Support::Student;          // PgTopK
  SupportWeight weight = SupportWeight::StudentP;  // PgTopK
  float teacher_weight = 1.0f;  // PgTopK: multiplies (log q - log p)
  bool use_ratio = true;        // PgSampled/Sft/extra term: importance ratio rho = p(y)/mu(y)
  float clip = 0.0f;            // PPO-style clip of rho to [1 - clip, 1 + clip]; 0 = off
  float beta = 0.5f;            // Jsd
  bool tail = false;            // Fkl in TopK mode: add the tail bucket
};

// Loss and its gradient with respect to z for each row (DESIGN.md §4), times the row weight w[r]
// (aggregation: 1/N for token mean). adv[r] is an advantage applied to the sampled token with the
// importance ratio rho = exp(log p(y) - logmu[r]) (1 in value when !use_ratio):
//   loss_r = -w ρ adv (clipped PPO-style when clip > 0), d/dz = -w adv ρ (e_y - p)
// For PgSampled adv is the whole advantage; for every other kind it is an extra term (outcome
// reward mixing) added to the kind's own loss. baseline[r] (PgTopK) is subtracted from each
// support token's reward before weighting. loss [n] F32 and dz [n, V] F32 are overwritten.
// With `shard`, z and dz hold this rank's vocabulary columns only (see ShardRows below); the
// loss is the row's whole loss on every shard.
void objective_rows(const Tensor& z, const TeacherRows& teacher, const Tensor& y,
                    const Tensor& logmu, const Tensor& adv, const Tensor& baseline,
                    const Tensor& w, const ObjectiveArgs& args, Tensor& loss, Tensor& dz,
                    const ShardRows* shard = nullptr);

// ---- vocabulary-parallel rows (tensor parallelism) -----------------------------------------
// With the vocabulary split over tensor-parallel ranks, each rank holds columns [range.begin,
// range.begin + V_local) of every row's student logits. token_stats and objective_rows then run
// on those columns alone, given ShardRows: the few per-row quantities that need the whole
// vocabulary, combined from every shard's ShardPartials with O(rows x ids) communication
// (parallel/vocab_parallel does the exchange), never O(rows x V). In Full mode the teacher's
// logits u are sharded the same way and a second exchange (shard_full_sums) adds the sums that
// need both distributions' log-normalisers (the KLs, the JSD) and the values at the merged top-k
// ids.
//
// `ids` [n, K] I32 names the ids whose logits must be known whole: column 0 the sampled token y,
// then the student's top-k ids, then the teacher's (TopK mode), then (Full) the top diag-k ids of
// p and of q; -1 marks an unused entry.
struct ShardPartials {                   // one shard's share, relative to its own row maxima
  std::vector<double> max, sum_exp, sum_exp_dz, sum_exp_tail;  // [n]: m, sum e, sum e (z - m),
                                                                // sum e over ids not in tail_ids
  std::vector<double> z_at;              // [n * K]: z at ids in this shard, 0 elsewhere
};
struct ShardRows {
  VocabRange range;
  Tensor ids;                            // [n, K] as above
  int64_t student_k = 0, teacher_k = 0;  // the lists' lengths within ids
  std::vector<double> lse, entropy;      // [n] of softmax(z) over the whole vocabulary
  std::vector<double> p_tail;            // [n] p of the ids outside tail_ids (fkl's tail bucket)
  std::vector<double> z_at;              // [n * K] z at ids
  // Full mode: the teacher's side and the sums over the whole vocabulary.
  bool full = false;
  int64_t top_k = 0;                     // the lists of the top_k ids of p and of q, after the
                                         // teacher's list in ids (top-k order: larger first,
                                         // ties to the lower id)
  std::vector<double> lse_u, entropy_u;  // [n] of softmax(u)
  std::vector<double> u_at;              // [n * K]
  std::vector<double> kl_pq, kl_qp;      // [n] KL(p || q), KL(q || p)
  std::vector<double> jsd, jsd_pg;       // [n] the generalised JSD at `beta` and sum p g (its
  double beta = 0.5;                     //     gradient's mean term), see objective_math.hpp
};
// Full mode, first exchange: this shard's k best ids of x_local [n, V_local] (global ids, value
// order; padded with id -1) and their values.
void shard_topk(const Tensor& x_local, const VocabRange& range, int64_t k,
                std::vector<int32_t>& ids, std::vector<double>& values);
// The k best of every shard's candidates (each [n * k], any shard order), in top-k order.
std::vector<int32_t> merge_topk(const std::vector<std::vector<int32_t>>& ids,
                                const std::vector<std::vector<double>>& values, int64_t n,
                                int64_t k);
// Full mode, second exchange: this shard's share of the sums over the vocabulary, given the
// whole rows' log-normalisers; [n] each. The shards' shares add up.
struct ShardSums {
  std::vector<double> kl_pq, kl_qp, jsd, jsd_pg;
};
void shard_full_sums(const Tensor& z_local, const Tensor& u_local, const std::vector<double>& lse,
                     const std::vector<double>& lse_u, double beta, ShardSums& out);
// x at ids [n, K] (global) where this shard holds them, 0 elsewhere: [n * K].
std::vector<double> shard_values(const Tensor& x_local, const VocabRange& range, const Tensor& ids);
// This shard's partials of z_local [n, V_local] at `range`; tail_ids [n, kt] (or null).
void shard_partials(const Tensor& z_local, const VocabRange& range, const Tensor& ids,
                    const Tensor* tail_ids, ShardPartials& out);
// Every shard's partials (any order) combined; the lists' lengths are recorded for the ops.
ShardRows combine_shards(const std::vector<ShardPartials>& shards, const VocabRange& range,
                         const Tensor& ids, int64_t student_k, int64_t teacher_k);

// ---- sampling --------------------------------------------------------------------------------
// One token per row of logits [B, V]. temperature <= 0 is greedy (argmax). Else softmax(x / T),
// restricted to the top_k largest (top_k <= 0: all), then to the smallest prefix (by descending
// probability) whose mass reaches top_p (top_p >= 1: all), renormalised, and inverted at u[b]
// (uniforms [B] F32 in [0, 1), supplied by the caller from per-sequence RNG streams so that a
// sequence's tokens do not depend on the rest of the batch).
// ids [B] I32; logprobs [B] F32 = log of the chosen token's probability under that final
// distribution (0 for greedy).
// vocab_limit in [1, V] restricts every step to the ids [0, vocab_limit), as if the logits past
// it were -inf (top_k counts allowed ids only): an imported model's embedding may have padded,
// untrained rows beyond the tokenizer's vocabulary. 0 means V (all ids).
void sample_rows(const Tensor& logits, float temperature, int top_k, float top_p,
                 const Tensor& uniforms, Tensor& ids, Tensor& logprobs, int64_t vocab_limit = 0);

// ---- optimizer -------------------------------------------------------------------------------
struct AdamWParams {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
  int64_t step = 1;         // 1-based, for bias correction
  float grad_scale = 1.0f;  // multiplies the gradient first (global-norm clipping)
};
// Decoupled weight decay: p -= lr * (wd * p + mhat / (sqrt(vhat) + eps)).
void adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWParams& hp);

}  // namespace opd::backend
