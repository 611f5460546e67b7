#include "distill/teacher.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "model/lm_loss.hpp"
#include "parallel/vocab_parallel.hpp"

namespace opd::distill {

namespace ops = opd::backend;
using core::DType;

LocalTeacher::LocalTeacher(std::unique_ptr<model::Transformer> model, float temperature,
                           int64_t vocab_chunk, int64_t rows_per_block)
    : model_(std::move(model)),
      temperature_(temperature),
      vocab_chunk_(vocab_chunk),
      rows_per_block_(rows_per_block) {
  OPD_CHECK(temperature_ > 0, "teacher temperature must be positive");
}

void teacher_logits_block(const ScoreReply& reply, int64_t r0, int64_t r1, Tensor& out) {
  const float scale = 1.0f / reply.temperature;
  if (reply.head_tp.size() == 1) {
    ops::gemm(reply.hidden.slice(r0, r1), false, reply.head, true, out, scale);
    return;
  }
  Tensor local = Tensor::empty({r1 - r0, reply.head.dim(0)}, core::DType::F32, reply.head.device());
  ops::gemm(reply.hidden.slice(r0, r1), false, reply.head, true, local, scale);
  reply.head_tp.gather_columns(local, out);
}

void LocalTeacher::forward_rows(const ScoreRequest& req, Tensor& hidden) {
  // Groups of sequences, one per pipeline stage, so that the stages work at once; a request's
  // rows are ordered by sequence, so each group's rows are contiguous.
  const parallel::PipelineParallel& pp = model_->pipeline();
  const int64_t B = req.ids.dim(0), T = req.ids.dim(1), M = req.rows.numel();
  const int64_t n = std::max<int64_t>(1, std::min<int64_t>(B, pp.size()));
  const int32_t* rows = req.rows.data<int32_t>();
  int64_t r = 0;
  for (int64_t g = 0; g < n; ++g) {
    const int64_t b0 = B * g / n, b1 = B * (g + 1) / n, r0 = r;
    while (r < M && rows[r] < b1 * T) ++r;
    const Tensor& h = model_->forward(req.ids.slice(b0, b1), model::causal_positions(b1 - b0, T),
                                      false, nullptr, static_cast<int>(g));
    if (!model_->has_head() || r == r0) continue;
    std::vector<int32_t> local(rows + r0, rows + r);
    for (int32_t& x : local) x -= static_cast<int32_t>(b0 * T);
    Tensor dst = hidden.slice(r0, r);
    const Tensor at = ops::on_device(Tensor::from_vector(local, {r - r0}), h.device());
    ops::embedding_forward(h, at, dst);  // gather the rows
  }
  pp.wait_sends();
}

void teacher_logits_shard(const ScoreReply& reply, int64_t r0, int64_t r1,
                          const backend::VocabRange& range, Tensor& out) {
  const int64_t width = out.dim(1);
  Tensor head = reply.head;
  if (reply.head_tp.size() > 1) {
    OPD_CHECK(reply.head.dim(0) == width && reply.head_tp.rank() * width == range.begin,
              "the teacher's head shard does not cover the student's vocabulary columns");
  } else {
    head = reply.head.slice(range.begin, range.begin + width);  // rows of the whole head
  }
  ops::gemm(reply.hidden.slice(r0, r1), false, head, true, out, 1.0f / reply.temperature);
}

ScoreReply LocalTeacher::score(const ScoreRequest& req) {
  const int64_t M = req.rows.numel();
  const int64_t V = model_->config().vocab_size;
  ScoreReply reply;
  reply.temperature = temperature_;
  reply.signal.mode = req.mode;
  // The hidden rows, the head and the [rows, V] blocks stay on the model's device; the per-row
  // arrays of the reply come back to the host (O(rows x k)).
  const core::Device dev = model_->device();
  const core::Device host = core::Device::Host;
  reply.hidden = Tensor::empty({M, model_->config().d_model}, DType::F32, dev);
  forward_rows(req, reply.hidden);
  if (!model_->has_head()) return reply;  // the other pipeline stages: the scores are the last's
  reply.head = model_->lm_head().value;
  reply.head_tp = model_->tensor_parallel();

  // Log-sum-exp, log q(y) and entropy: the vocab-chunked head (every mode uses them).
  ops::HeadStats stats;
  stats.lse = Tensor::empty({M}, DType::F32, dev);
  stats.target_logit = Tensor::empty({M}, DType::F32, dev);
  stats.entropy = Tensor::empty({M}, DType::F32, dev);
  const Tensor targets = ops::on_device(req.targets, dev);
  parallel::vocab_parallel_head_stats(reply.hidden, reply.head, &targets, temperature_,
                                      vocab_chunk_, reply.head_tp, stats);
  stats.lse = ops::on_device(stats.lse, host);
  stats.target_logit = ops::on_device(stats.target_logit, host);
  reply.lse = stats.lse;
  reply.signal.entropy_q = ops::on_device(stats.entropy, host);
  reply.signal.logq_y = Tensor::empty({M});
  for (int64_t i = 0; i < M; ++i)
    reply.signal.logq_y.data<float>()[i] =
        stats.target_logit.data<float>()[i] - stats.lse.data<float>()[i];
  if (req.mode == Signal::Sampled) return reply;

  // TopK (and Full): log q at the student's ids and the teacher's own top-k, a block of rows at
  // a time so that at most [rows_per_block, V] logits exist.
  OPD_CHECK(req.student_ids.defined() && req.student_ids.dim(0) == M,
            "top-k scoring needs the student's top-k ids per position");
  const int64_t k = req.student_ids.dim(1);
  reply.signal.student_ids = req.student_ids;
  reply.signal.logq_student_ids = Tensor::empty({M, k});
  reply.signal.teacher_ids = Tensor::empty({M, k}, DType::I32);
  reply.signal.logq_teacher_ids = Tensor::empty({M, k});
  const parallel::TensorParallel& tp = reply.head_tp;
  if (tp.size() > 1) {
    // Vocabulary-parallel: this rank's columns of each block, log q at the student's ids and the
    // teacher's own top-k gathered and merged over the group (O(rows x k) traffic).
    const backend::VocabRange range = parallel::vocab_shard(V, tp);
    Tensor local = Tensor::empty({rows_per_block_, V / tp.size()}, DType::F32, dev);
    for (int64_t r0 = 0; r0 < M; r0 += rows_per_block_) {
      const int64_t r1 = std::min(M, r0 + rows_per_block_);
      Tensor b = local.slice(0, r1 - r0);
      teacher_logits_shard(reply, r0, r1, range, b);
      Tensor got = reply.signal.logq_student_ids.slice(r0, r1);
      Tensor tv = reply.signal.logq_teacher_ids.slice(r0, r1);
      Tensor ti = reply.signal.teacher_ids.slice(r0, r1);
      parallel::vocab_parallel_gather(b, range, req.student_ids.slice(r0, r1), tp, got);
      parallel::vocab_parallel_topk(b, range, k, tp, tv, ti);
      for (int64_t r = r0; r < r1; ++r) {  // logits -> log q
        const float lse = reply.lse.data<float>()[r];
        for (int64_t i = 0; i < k; ++i) {
          reply.signal.logq_student_ids.data<float>()[r * k + i] -= lse;
          reply.signal.logq_teacher_ids.data<float>()[r * k + i] -= lse;
        }
      }
    }
    return reply;
  }
  Tensor block = Tensor::empty({rows_per_block_, V}, DType::F32, dev);
  Tensor logq = Tensor::empty({rows_per_block_, V}, DType::F32, dev);
  // On a GPU the block's k-wide results are formed there and copied into the host reply.
  const bool staged = dev != host;
  Tensor got_d, tv_d, ti_d;
  if (staged) {
    got_d = Tensor::empty({rows_per_block_, k}, DType::F32, dev);
    tv_d = Tensor::empty({rows_per_block_, k}, DType::F32, dev);
    ti_d = Tensor::empty({rows_per_block_, k}, DType::I32, dev);
  }
  for (int64_t r0 = 0; r0 < M; r0 += rows_per_block_) {
    const int64_t r1 = std::min(M, r0 + rows_per_block_);
    Tensor b = block.slice(0, r1 - r0);
    Tensor lq = logq.slice(0, r1 - r0);
    teacher_logits_block(reply, r0, r1, b);
    ops::log_softmax_rows(b, lq);
    Tensor got = reply.signal.logq_student_ids.slice(r0, r1);
    Tensor tv = reply.signal.logq_teacher_ids.slice(r0, r1);
    Tensor ti = reply.signal.teacher_ids.slice(r0, r1);
    if (!staged) {
      ops::gather_cols(lq, req.student_ids.slice(r0, r1), got);
      ops::topk_rows(lq, static_cast<int>(k), tv, ti);
      continue;
    }
    Tensor gd = got_d.slice(0, r1 - r0), vd = tv_d.slice(0, r1 - r0), id = ti_d.slice(0, r1 - r0);
    ops::gather_cols(lq, ops::on_device(req.student_ids.slice(r0, r1), dev), gd);
    ops::topk_rows(lq, static_cast<int>(k), vd, id);
    ops::copy(gd, got);
    ops::copy(vd, tv);
    ops::copy(id, ti);
  }
  return reply;
}

}  // namespace opd::distill
