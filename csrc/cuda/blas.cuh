// Row-major GEMMs on cuBLAS (column-major) for the scan: each wrapper states the row-major product it computes and
// maps it to one cublas<T>gemm call. Status codes are checked (TORCH_CUDABLAS_CHECK throws c10::Error).
// The handle is PyTorch's (at::cuda::getCurrentCUDABlasHandle): bound to the current stream, with the math mode
// (TF32 or not) that torch.backends.cuda.matmul sets, so fp32 GEMMs round like torch.matmul's.
#pragma once

#include <ATen/cuda/Exceptions.h>
#include <c10/util/Exception.h>
#include <cublas_v2.h>

#include <cstdint>
#include <limits>

namespace rate_rnn {
namespace cuda {
namespace blas {

inline int as_int(int64_t v, const char* what) {
  TORCH_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(), "rate_rnn: ", what, " = ", v,
              " exceeds cuBLAS's 32-bit sizes");
  return static_cast<int>(v);
}

// Column-major C (m x n) = alpha op(A) op(B) + beta C.
inline void gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                 const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  TORCH_CUDABLAS_CHECK(cublasSgemm(h, ta, tb, m, n, k, &alpha, A, lda, B, ldb, &beta, C, ldc));
}
inline void gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, double alpha,
                 const double* A, int lda, const double* B, int ldb, double beta, double* C, int ldc) {
  TORCH_CUDABLAS_CHECK(cublasDgemm(h, ta, tb, m, n, k, &alpha, A, lda, B, ldb, &beta, C, ldc));
}

// Row-major C (rows x N) = beta C + X (rows x N) W^T, W (N x N).  [z_t = h_{t-1} W_hh^T]
// Column-major view: C^T = W X^T, with W seen as W^T -> op T.
template <typename T>
void rows_times_wt(cublasHandle_t h, int rows, int N, const T* X, const T* W, T beta, T* C) {
  gemm(h, CUBLAS_OP_T, CUBLAS_OP_N, N, rows, N, T(1), W, N, X, N, beta, C, N);
}

// Row-major C (rows x N) = beta C + X (rows x N) W, W (N x N).  [Lambda_{t-1} += Delta_t W_hh]
// Column-major view: C^T = W^T X^T, both already in that form -> op N, N.
template <typename T>
void rows_times_w(cublasHandle_t h, int rows, int N, const T* X, const T* W, T beta, T* C) {
  gemm(h, CUBLAS_OP_N, CUBLAS_OP_N, N, rows, N, T(1), W, N, X, N, beta, C, N);
}

// Row-major C (N x N) = beta C + D^T Hp, D and Hp (rows x N).  [dW_hh = sum_t Delta_t^T h_{t-1}]
// Column-major view: C^T = Hp^T D, Hp seen as Hp^T -> op N, D seen as D^T -> op T. K = rows.
template <typename T>
void at_times_b(cublasHandle_t h, int rows, int N, const T* D, const T* Hp, T beta, T* C) {
  gemm(h, CUBLAS_OP_N, CUBLAS_OP_T, N, N, rows, T(1), Hp, N, D, N, beta, C, N);
}

}  // namespace blas
}  // namespace cuda
}  // namespace rate_rnn
