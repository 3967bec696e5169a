// Path (i): a host loop over time of one cuBLAS GEMM and ONE fused elementwise kernel per step (haste-style).
// Works for every N and both dtypes; W_hh is re-read from L2 each step, so it is the fallback where the
// persistent kernel does not fit.
#include "blas.cuh"
#include "rate_rnn_cuda.h"
#include "step_kernels.cuh"

#include <c10/cuda/CUDAException.h>

namespace rate_rnn {
namespace cuda {

int64_t gemm_ddecay_chunks(int64_t B) {
  return (B + kernels::kBwdRowsPerBlock - 1) / kernels::kBwdRowsPerBlock;
}

template <typename scalar_t, Activation A, bool kNoise>
void gemm_forward(const ForwardParams<scalar_t>& p, cublasHandle_t handle, cudaStream_t stream) {
  using namespace kernels;
  const int B = blas::as_int(p.B, "B"), N = blas::as_int(p.N, "N");
  const int64_t BN = p.B * p.N;
  const dim3 grid(static_cast<unsigned>((BN + kStepThreads - 1) / kStepThreads));
  for (int64_t t = 0; t < p.T; ++t) {
    const scalar_t* h_prev = t == 0 ? p.h0 : p.H + (t - 1) * BN;
    blas::rows_times_wt<scalar_t>(handle, B, N, h_prev, p.W_hh, scalar_t(0), p.R + t * BN);  // R[t] = h W^T
    forward_step_kernel<scalar_t, A, kNoise><<<grid, kStepThreads, 0, stream>>>(p, t);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

template <typename scalar_t, Activation A>
void gemm_backward(const BackwardParams<scalar_t>& p, cublasHandle_t handle, cudaStream_t stream) {
  using namespace kernels;
  const int B = blas::as_int(p.B, "B"), N = blas::as_int(p.N, "N");
  const int64_t BN = p.B * p.N;
  const int64_t chunks = gemm_ddecay_chunks(p.B);
  TORCH_CHECK(chunks <= 65535, "rate_rnn: B = ", p.B, " exceeds the gemm path's grid (",
              65535 * kBwdRowsPerBlock, " rows at most)");
  if (p.ddecay_partial != nullptr) {
    C10_CUDA_CHECK(cudaMemsetAsync(p.ddecay_partial, 0, sizeof(double) * chunks * p.N, stream));
  }
  // The adjoint ping-pongs between two (B, N) buffers; start where the T-th (last) write lands in dh0.
  scalar_t* buf[2];
  buf[p.T % 2] = p.dh0;
  buf[(p.T + 1) % 2] = p.lam_scratch;
  C10_CUDA_CHECK(cudaMemcpyAsync(buf[0], p.grad_H + (p.T - 1) * BN, sizeof(scalar_t) * BN,
                                 cudaMemcpyDeviceToDevice, stream));  // Lambda_T = G_T
  const dim3 block(kBwdTileN, kBwdTileY);
  const dim3 grid(static_cast<unsigned>((p.N + kBwdTileN - 1) / kBwdTileN), static_cast<unsigned>(chunks));
  for (int64_t t = p.T - 1, k = 0; t >= 0; --t, ++k) {
    const scalar_t* lam = buf[k % 2];
    scalar_t* lam_next = buf[(k + 1) % 2];
    backward_step_kernel<scalar_t, A><<<grid, block, 0, stream>>>(p, t, lam, lam_next, p.ddecay_partial);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    blas::rows_times_w<scalar_t>(handle, B, N, p.dU + t * BN, p.W_hh, scalar_t(1), lam_next);  // += Delta_t W
  }
}

#define RATE_RNN_GEMM_INSTANTIATE(A)                                                                        \
  template void gemm_forward<float, A, false>(const ForwardParams<float>&, cublasHandle_t, cudaStream_t);   \
  template void gemm_forward<float, A, true>(const ForwardParams<float>&, cublasHandle_t, cudaStream_t);    \
  template void gemm_forward<double, A, false>(const ForwardParams<double>&, cublasHandle_t, cudaStream_t); \
  template void gemm_forward<double, A, true>(const ForwardParams<double>&, cublasHandle_t, cudaStream_t);  \
  template void gemm_backward<float, A>(const BackwardParams<float>&, cublasHandle_t, cudaStream_t);        \
  template void gemm_backward<double, A>(const BackwardParams<double>&, cublasHandle_t, cudaStream_t);

RATE_RNN_GEMM_INSTANTIATE(Activation::Identity)
RATE_RNN_GEMM_INSTANTIATE(Activation::ReLU)
RATE_RNN_GEMM_INSTANTIATE(Activation::Tanh)
RATE_RNN_GEMM_INSTANTIATE(Activation::Softplus)
RATE_RNN_GEMM_INSTANTIATE(Activation::ReTanh)
RATE_RNN_GEMM_INSTANTIATE(Activation::Power)
#undef RATE_RNN_GEMM_INSTANTIATE

}  // namespace cuda
}  // namespace rate_rnn
