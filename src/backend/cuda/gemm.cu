// CUDA GEMM through cuBLASLt: fp32 operands, or bf16 operands (mixed precision: tensor cores,
// fp32 accumulation), always into an fp32 result. opd's tensors are row-major; cuBLASLt's
// default layout is column-major, and a row-major X [r, c] is the column-major X^T [c, r] with the
// same leading dimension, so C = op(A) op(B) is computed as the column-major
// C^T = op(B)^T op(A)^T: the operands swap and keep their transpose flags.
#include <cublasLt.h>

#include <array>
#include <cstdint>
#include <map>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_ops.hpp"

namespace opd::backend::cuda {

namespace {

void check_lt(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS)
    internal_error("cublasLt", std::string(what) + " failed with status " + std::to_string(int(st)));
}

// One handle and one workspace for the process (created on first use).
struct Lt {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  static constexpr std::size_t kWorkspace = 32u << 20;
  Lt() {
    check_lt(cublasLtCreate(&handle), "cublasLtCreate");
    check(cudaMalloc(&workspace, kWorkspace), "cublasLt workspace");
  }
};
Lt& lt() {
  static Lt instance;
  return instance;
}

// A column-major layout of `rows` x `cols` with leading dimension ld, `batch` matrices `stride`
// apart; destroyed with the object.
struct Layout {
  cublasLtMatrixLayout_t h = nullptr;
  Layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, int64_t batch, int64_t stride) {
    check_lt(cublasLtMatrixLayoutCreate(&h, type, static_cast<uint64_t>(rows),
                                        static_cast<uint64_t>(cols), ld),
             "cublasLtMatrixLayoutCreate");
    if (batch > 1) {
      const int32_t b = static_cast<int32_t>(batch);
      check_lt(cublasLtMatrixLayoutSetAttribute(h, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &b, sizeof b),
               "batch count");
      check_lt(cublasLtMatrixLayoutSetAttribute(h, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                &stride, sizeof stride),
               "batch stride");
    }
  }
  ~Layout() {
    if (h) cublasLtMatrixLayoutDestroy(h);
  }
  // Hands the layout over to a longer-lived owner (a cached plan).
  cublasLtMatrixLayout_t release() {
    cublasLtMatrixLayout_t out = h;
    h = nullptr;
    return out;
  }
};

// The largest power of two (up to 256) that divides the address: cuBLASLt's heuristics assume
// 256-byte-aligned operands unless told otherwise, and a kernel chosen for an alignment the
// pointers lack may fail, so each plan is made for the alignment it will see.
uint32_t alignment(const void* p) {
  const auto u = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && u % a != 0) a /= 2;
  return a;
}

// Everything a cuBLASLt call needs besides the pointers and scalars, made once per shape:
// descriptors, layouts and the heuristic's algorithm. Asking the heuristic on every call costs
// more host time than a small GEMM takes on the device (batch-1 decoding is all small GEMMs).
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool have_algo = false;
};

using PlanKey = std::array<int64_t, 14>;

// c [M, N] = alpha op(a) op(b) + beta c_in for `batch` row-major matrices of each operand, with
// c_in = c unless given (cuBLASLt reads C and writes D through separate pointers, so a residual
// can be added in the epilogue into another buffer). a and b hold elements of `in` (fp32 or
// bf16); c and c_in are fp32.
void matmul(cudaDataType_t in, const void* a, int64_t a_rows, int64_t a_cols, bool ta, const void* b,
            int64_t b_rows, int64_t b_cols, bool tb, float* c, int64_t M, int64_t N, float alpha,
            float beta, int64_t batch, const float* c_in = nullptr) {
  static std::map<PlanKey, Plan> plans;
  if (!c_in) c_in = c;
  const uint32_t align_a = alignment(b), align_b = alignment(a), align_c = alignment(c),
                 align_c_in = alignment(c_in);
  const PlanKey key{int64_t(in), a_rows, a_cols, ta, b_rows, b_cols, tb, M, N, batch,
                    align_a, align_b, align_c, align_c_in};
  auto it = plans.find(key);
  if (it == plans.end()) {
    if (plans.size() >= 4096) {  // shapes that vary without end (response lengths): start over
      for (auto& [k, old] : plans) {
        cublasLtMatmulDescDestroy(old.desc);
        for (auto* l : {old.la, old.lb, old.lc}) cublasLtMatrixLayoutDestroy(l);
      }
      plans.clear();
    }
    Plan p;
    check_lt(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul desc");
    // Column-major view: first operand b^T (op flag tb), second a^T (op flag ta).
    const cublasOperation_t op_first = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_second = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    check_lt(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof op_first),
             "transa");
    check_lt(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof op_second),
             "transb");
    p.la = Layout(in, b_cols, b_rows, b_cols, batch, b_rows * b_cols).release();
    p.lb = Layout(in, a_cols, a_rows, a_cols, batch, a_rows * a_cols).release();
    p.lc = Layout(CUDA_R_32F, N, M, N, batch, M * N).release();
    cublasLtMatmulPreference_t pref = nullptr;
    check_lt(cublasLtMatmulPreferenceCreate(&pref), "preference");
    const uint64_t ws = Lt::kWorkspace;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof align_a);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof align_b);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c_in, sizeof align_c_in);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c, sizeof align_c);
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt().handle, p.desc, p.la, p.lb, p.lc,
                                                             p.lc, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    // No algorithm from the heuristic: let cublasLtMatmul choose on each call (it reports its
    // own failure if none fits).
    if (st == CUBLAS_STATUS_SUCCESS && found > 0) {
      p.algo = result.algo;
      p.have_algo = true;
    }
    it = plans.emplace(key, p).first;
  }
  const Plan& p = it->second;
  check_lt(cublasLtMatmul(lt().handle, p.desc, &alpha, b, p.la, a, p.lb, &beta, c_in, p.lc, c, p.lc,
                          p.have_algo ? &p.algo : nullptr, lt().workspace, Lt::kWorkspace, stream()),
           "cublasLtMatmul");
}

// The cuBLASLt element type of a GEMM's operands, checked: both fp32 or both bf16, on the device.
cudaDataType_t operand_type(const char* op, const Tensor& a, const Tensor& b, const Tensor& c) {
  OPD_CHECK(a.device() == core::Device::Cuda && b.device() == core::Device::Cuda &&
                (a.dtype() == core::DType::F32 || a.dtype() == core::DType::BF16) &&
                b.dtype() == a.dtype(),
            op, ": a and b must be CUDA tensors, both f32 or both bf16, got ", a.describe(), " and ",
            b.describe());
  require_device(op, "c", c);
  return a.dtype() == core::DType::BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

}  // namespace

void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, float alpha,
          float beta) {
  const cudaDataType_t in = operand_type("gemm", a, b, c);
  OPD_CHECK(a.ndim() == 2 && b.ndim() == 2 && c.ndim() == 2, "gemm: 2-d operands, got ",
            a.describe(), b.describe(), c.describe());
  const int64_t M = trans_a ? a.dim(1) : a.dim(0), K = trans_a ? a.dim(0) : a.dim(1);
  const int64_t Kb = trans_b ? b.dim(1) : b.dim(0), N = trans_b ? b.dim(0) : b.dim(1);
  OPD_CHECK(K == Kb && c.dim(0) == M && c.dim(1) == N, "gemm: op(a) ", M, "x", K, ", op(b) ", Kb,
            "x", N, ", c ", c.describe());
  if (M == 0 || N == 0) return;
  if (K == 0) {  // an empty product: c = beta c
    scale(c, beta);
    return;
  }
  matmul(in, a.raw(), a.dim(0), a.dim(1), trans_a, b.raw(), b.dim(0), b.dim(1), trans_b,
         c.data<float>(), M, N, alpha, beta, 1);
}

void gemm_residual(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                   const Tensor& residual, Tensor& out) {
  const cudaDataType_t in = operand_type("gemm_residual", a, b, out);
  require_device("gemm_residual", "residual", residual);
  OPD_CHECK(a.ndim() == 2 && b.ndim() == 2 && out.ndim() == 2 && residual.shape() == out.shape(),
            "gemm_residual: 2-d operands and a residual of out's shape, got ", a.describe(),
            b.describe(), residual.describe(), out.describe());
  const int64_t M = trans_a ? a.dim(1) : a.dim(0), K = trans_a ? a.dim(0) : a.dim(1);
  const int64_t Kb = trans_b ? b.dim(1) : b.dim(0), N = trans_b ? b.dim(0) : b.dim(1);
  OPD_CHECK(K == Kb && out.dim(0) == M && out.dim(1) == N, "gemm_residual: op(a) ", M, "x", K,
            ", op(b) ", Kb, "x", N, ", out ", out.describe());
  if (M == 0 || N == 0) return;
  if (K == 0) {  // an empty product: out = residual
    copy(residual, out);
    return;
  }
  matmul(in, a.raw(), a.dim(0), a.dim(1), trans_a, b.raw(), b.dim(0), b.dim(1), trans_b,
         out.data<float>(), M, N, 1.0f, 1.0f, 1, residual.data<float>());
}

void gemm_batched(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                  float alpha, float beta) {
  const cudaDataType_t in = operand_type("gemm_batched", a, b, c);
  OPD_CHECK(a.ndim() == 3 && b.ndim() == 3 && c.ndim() == 3 && a.dim(0) == b.dim(0) &&
                a.dim(0) == c.dim(0),
            "gemm_batched: [L, ., .] operands, got ", a.describe(), b.describe(), c.describe());
  const int64_t L = a.dim(0);
  const int64_t M = trans_a ? a.dim(2) : a.dim(1), K = trans_a ? a.dim(1) : a.dim(2);
  const int64_t Kb = trans_b ? b.dim(2) : b.dim(1), N = trans_b ? b.dim(1) : b.dim(2);
  OPD_CHECK(K == Kb && c.dim(1) == M && c.dim(2) == N, "gemm_batched: shapes do not chain");
  if (L == 0 || M == 0 || N == 0) return;
  if (K == 0) {
    scale(c, beta);
    return;
  }
  matmul(in, a.raw(), a.dim(1), a.dim(2), trans_a, b.raw(), b.dim(1), b.dim(2), trans_b,
         c.data<float>(), M, N, alpha, beta, L);
}

}  // namespace opd::backend::cuda
