// Dispatch on device (DESIGN.md §2) for the vocabulary ops: row-wise softmax family, top-k,
// the vocab-chunked LM head and sampling.
#include "backend/ops.hpp"

#include "backend/cpu/cpu_ops.hpp"
#include "backend/device_check.hpp"
#ifdef OPD_WITH_CUDA
#include "backend/cuda/cuda_distill_ops.hpp"
#include "backend/cuda/cuda_ops.hpp"
#endif

namespace opd::backend {

namespace {
// The CPU head works in f32: bf16 operands (mixed precision) are widened first, which is exact.
Tensor widened(const Tensor& x) {
  if (x.dtype() != core::DType::BF16) return x;
  Tensor out = Tensor::empty(x.shape());
  cpu::cast(x, out);
  return out;
}
}  // namespace

void log_softmax_rows(const Tensor& x, Tensor& out) {
  OPD_ON_CUDA("log_softmax_rows", x, log_softmax_rows(x, out));
  cpu::log_softmax_rows(x, out);
}

void logsumexp_rows(const Tensor& x, Tensor& out) {
  OPD_ON_CUDA("logsumexp_rows", x, logsumexp_rows(x, out));
  cpu::logsumexp_rows(x, out);
}

void entropy_rows(const Tensor& x, Tensor& out) {
  OPD_ON_CUDA("entropy_rows", x, entropy_rows(x, out));
  cpu::entropy_rows(x, out);
}

void topk_rows(const Tensor& x, int k, Tensor& vals, Tensor& ids) {
  OPD_ON_CUDA("topk_rows", x, topk_rows(x, k, vals, ids));
  cpu::topk_rows(x, k, vals, ids);
}

void lm_head_stats(const Tensor& h, const Tensor& w, const Tensor* targets, float temperature,
                   int64_t chunk, HeadStats& out, const VocabRange& range) {
  OPD_ON_CUDA("lm_head_stats", h, lm_head_stats(h, w, targets, temperature, chunk, out, range));
  cpu::lm_head_stats(widened(h), widened(w), targets, temperature, chunk, out, range);
}

void lm_head_cross_entropy_backward(const Tensor& h, const Tensor& w, const Tensor& targets,
                                    const Tensor& lse, const Tensor& d_loss, float temperature,
                                    int64_t chunk, Tensor& dh, Tensor& dw,
                                    const VocabRange& range) {
  OPD_ON_CUDA("lm_head_cross_entropy_backward", h, lm_head_cross_entropy_backward(h, w, targets, lse, d_loss, temperature, chunk, dh, dw,
                                      range));
  cpu::lm_head_cross_entropy_backward(widened(h), widened(w), targets, lse, d_loss, temperature,
                                      chunk, dh, dw, range);
}

void sample_rows(const Tensor& logits, float temperature, int top_k, float top_p,
                 const Tensor& uniforms, Tensor& ids, Tensor& logprobs, int64_t vocab_limit) {
  OPD_ON_CUDA_STAGED("sample_rows", logits,
              sample_rows(logits, temperature, top_k, top_p, uniforms, ids, logprobs, vocab_limit));
  cpu::sample_rows(logits, temperature, top_k, top_p, uniforms, ids, logprobs, vocab_limit);
}

}  // namespace opd::backend
