// CPU matrix products: gemm and gemm_batched through OpenBLAS (sgemv when the result is a vector).
// bf16 operands (mixed precision's compute copies) are widened to f32 first: every bf16 value is
// exact in f32, so this is the reference product a tensor-core GEMM with f32 accumulation must
// match up to summation order. It exists for checking and CPU runs of bf16 jobs, not for speed.
#include <cblas.h>

#include <cstdint>

#include "backend/cpu/cpu_ops.hpp"
#include "core/error.hpp"

namespace opd::backend::cpu {

namespace {

using core::DType;

// A tensor seen as a row-major matrix: the last dimension is the columns, all leading
// dimensions (after `skip` batch dimensions) are flattened into rows.
struct Mat {
  int64_t rows = 0, cols = 0;
};

Mat as_matrix(const char* op, const char* name, const Tensor& t, int skip) {
  OPD_CHECK((t.dtype() == DType::F32 || (t.dtype() == DType::BF16 && name[0] != 'c')) &&
                t.is_host(),
            op, ": ", name, " must be a host f32 tensor", (name[0] != 'c' ? " (or bf16)" : ""),
            ", got ", t.describe());
  OPD_CHECK(t.ndim() >= 2 + skip, op, ": ", name, " must have at least ", 2 + skip,
            " dimensions, got ", t.describe());
  Mat m;
  m.cols = t.dim(-1);
  m.rows = 1;
  for (int i = skip; i < t.ndim() - 1; ++i) m.rows *= t.dim(i);
  return m;
}

// The per-matrix problem of c = alpha op(a) op(b) + beta c, with its shapes checked.
struct Problem {
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0;  // stored columns of a and b
};

Problem plan(const char* op, const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& c,
             int skip) {
  const Mat ma = as_matrix(op, "a", a, skip);
  const Mat mb = as_matrix(op, "b", b, skip);
  const Mat mc = as_matrix(op, "c", c, skip);
  Problem p;
  p.m = ta ? ma.cols : ma.rows;
  p.k = ta ? ma.rows : ma.cols;
  const int64_t kb = tb ? mb.cols : mb.rows;
  p.n = tb ? mb.rows : mb.cols;
  OPD_CHECK(p.k == kb, op, ": inner dimensions differ: op(a) of ", a.describe(),
            (ta ? " (transposed)" : ""), " has ", p.k, " columns, op(b) of ", b.describe(),
            (tb ? " (transposed)" : ""), " has ", kb, " rows");
  OPD_CHECK(mc.rows == p.m && mc.cols == p.n, op, ": c ", c.describe(), " is not ", p.m, " x ", p.n,
            " as op(a) ", a.describe(), " times op(b) ", b.describe(), " needs");
  OPD_CHECK(a.dtype() == b.dtype(), op, ": a and b must share a dtype, got ", a.describe(),
            " and ", b.describe());
  OPD_CHECK(c.raw() != a.raw() && c.raw() != b.raw(), op,
            ": c must not alias an input: ", c.describe());
  p.lda = ma.cols;
  p.ldb = mb.cols;
  return p;
}

CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }

// c[m, n] = alpha op(a) op(b) + beta c for one matrix. A result with a single row or column goes
// through sgemv: OpenBLAS 0.3.21's sgemm repacks the whole other operand when m == 1, while sgemv
// streams it (batch-1 decoding multiplies a row by every weight matrix).
void matmul(const Problem& p, const float* a, bool ta, const float* b, bool tb, float* c,
            float alpha, float beta) {
  const int64_t m = p.m, n = p.n, k = p.k;
  if (m == 0 || n == 0) return;
  if (k == 0 || alpha == 0.0f) {  // no product: c = beta c (beta 0 overwrites, even NaN)
    for (int64_t i = 0; i < m * n; ++i) c[i] = beta == 0.0f ? 0.0f : beta * c[i];
    return;
  }
  if (m == 1 || n == 1) {
    // BLAS lets beta == 0 skip reading y, but clear it so that garbage (NaN) never survives.
    if (beta == 0.0f)
      for (int64_t i = 0; i < m * n; ++i) c[i] = 0.0f;
    if (m == 1) {
      // c^T [n] = op(b)^T [n, k] x, x = the single row of op(a) (contiguous either way).
      if (tb)  // b stored [n, k]
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, alpha, b, p.ldb, a, 1, beta, c, 1);
      else  // b stored [k, n]
        cblas_sgemv(CblasRowMajor, CblasTrans, k, n, alpha, b, p.ldb, a, 1, beta, c, 1);
    } else {
      // c [m] = op(a) [m, k] x, x = the single column of op(b) (contiguous either way).
      if (ta)  // a stored [k, m]
        cblas_sgemv(CblasRowMajor, CblasTrans, k, m, alpha, a, p.lda, b, 1, beta, c, 1);
      else  // a stored [m, k]
        cblas_sgemv(CblasRowMajor, CblasNoTrans, m, k, alpha, a, p.lda, b, 1, beta, c, 1);
    }
    return;
  }
  cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), m, n, k, alpha, a, p.lda, b, p.ldb, beta, c, n);
}

// The f32 values of a (an f32 tensor itself, or bf16 widened into a new one).
Tensor as_f32(const Tensor& t) {
  if (t.dtype() == DType::F32) return t;
  Tensor out = Tensor::empty(t.shape());
  cast(t, out);
  return out;
}

}  // namespace

void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, float alpha,
          float beta) {
  const Problem p = plan("gemm", a, trans_a, b, trans_b, c, 0);
  const Tensor a32 = as_f32(a), b32 = as_f32(b);
  matmul(p, a32.data<float>(), trans_a, b32.data<float>(), trans_b, c.data<float>(), alpha, beta);
}

void gemm_batched(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                  float alpha, float beta) {
  const Problem p = plan("gemm_batched", a, trans_a, b, trans_b, c, 1);
  const int64_t batch = a.dim(0);
  OPD_CHECK(b.dim(0) == batch && c.dim(0) == batch,
            "gemm_batched: batch sizes differ: ", a.describe(), ", ", b.describe(), ", ",
            c.describe());
  const Tensor a32 = as_f32(a), b32 = as_f32(b);
  const float* pa = a32.data<float>();
  const float* pb = b32.data<float>();
  float* pc = c.data<float>();
  const int64_t sa = p.m * p.k, sb = p.k * p.n, sc = p.m * p.n;
  for (int64_t l = 0; l < batch; ++l)
    matmul(p, pa + l * sa, trans_a, pb + l * sb, trans_b, pc + l * sc, alpha, beta);
}

}  // namespace opd::backend::cpu
