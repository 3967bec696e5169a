// CUDA backend of rate_rnn::forward / rate_rnn::backward: the parameter structs the host fills and the kernels
// read, the two paths' launch entry points, and the persistent path's size rules (host and device share them).
// The op's contract (dynamics, shapes, lengths, noise, decay) is csrc/rate_rnn.h; this header only adds the
// CUDA-side buffers. Everything is time-major and contiguous; "row-major (T, B, N)" means element (t, b, n) at
// (t * B + b) * N + n.
//
// Files: rate_rnn_cuda.cu (op entry points, path choice, dW_hh and d(decay) reductions), gemm_path.cu (path i),
// persistent.cuh + persistent_<activation>.cu (path ii, device code in persistent_kernels.cuh), step_kernels.cuh
// (path i's elementwise kernels, reductions, add_normal_), device_ops.cuh (f, f', noise), blas.cuh (cuBLAS).
//
// Paths (chosen per call by rate_rnn_cuda.cu, see choose_path there):
//   gemm        any size, float32/float64: per step one cuBLAS GEMM plus ONE fused elementwise kernel.
//   persistent  float32, N <= kPersistentMaxN: one kernel runs all T steps with W_hh on chip (shared memory and
//               registers). Batch rows are independent, so each CTA owns `br` rows for the whole sequence and
//               needs only __syncthreads between steps (no grid-wide barrier, no co-residency requirement).
#pragma once

#include "../rate_rnn.h"

#include <cuda_runtime.h>
#include <cublas_v2.h>

#include <cstddef>
#include <cstdint>

namespace rate_rnn {
namespace cuda {

// Forward buffers. Inputs are read only; outputs alias no input and each other not at all.
template <typename scalar_t>
struct ForwardParams : ScanParams<scalar_t> {
  // Inherited: T, B, N; per_unit_decay; activation; noise_std; seed;
  //   lengths (B,) int64 device or null; decay (1,) or (N,); W_hh (N, N) row-major; h0 (B, N).
  const scalar_t* U = nullptr;  // (T, B, N) input drive U_t.
  scalar_t* H = nullptr;        // (T, B, N) out: h_1..h_T; frozen rows repeat their last state.
  scalar_t* R = nullptr;        // (T, B, N) out: r_t = f(z_t), 0 where frozen. The gemm path first writes
                                //   h_{t-1} W_hh^T into R[t] and the step kernel overwrites it with r_t.
};

// Backward buffers. Inputs are read only; outputs alias no input and each other not at all.
template <typename scalar_t>
struct BackwardParams : ScanParams<scalar_t> {
  // Inherited as in ForwardParams (noise_std / seed unused).
  const scalar_t* grad_H = nullptr;  // (T, B, N) G_t = dL/dH_t, final-state gradient already in G[T-1].
  const scalar_t* H = nullptr;       // (T, B, N) forward output (h_{t-1} = H[t-2], or h0 at t = 1).
  const scalar_t* R = nullptr;       // (T, B, N) forward output r_t.
  scalar_t* dU = nullptr;            // (T, B, N) out: Delta_t = Lambda_t (1-d) f'(r_t); 0 where frozen.
                                     //   The post-loop dW_hh GEMM reads it.
  scalar_t* dh0 = nullptr;           // (B, N) out: Lambda_0.
  scalar_t* lam_scratch = nullptr;   // (B, N) gemm path only: the adjoint ping-pongs between dh0 and this.
  double* ddecay_partial = nullptr;  // (chunks, N) or null when d(decay) is not needed: per-chunk sums of
                                     //   Lambda_t (h_{t-1} - r_t) over that chunk's rows and all t. Each
                                     //   (chunk, n) has ONE owning thread, which adds its steps in a fixed
                                     //   order (no atomics); reduce_ddecay sums chunks in a fixed order.
};

// ---- persistent path: size rules -----------------------------------------------------------------------------
// One thread per unit (N <= 256 threads). Each thread keeps the last `kreg` k-columns of its W_hh row (forward) or
// column (backward) in registers; the first `ns` (a multiple of 4) are in shared memory as float4 groups.
constexpr int kPersistentThreads = 256;
constexpr int kPersistentMaxN = kPersistentThreads;

// Registers given to W_hh per thread: fewer as the per-row state (x rows per CTA) grows, to stay spill-free
// under the 255-register cap of __launch_bounds__(256, 1).
__host__ __device__ constexpr int persistent_kreg(int br) { return br <= 2 ? 128 : (br == 4 ? 96 : 64); }

struct PersistentShape {
  int br = 0;              // rows per CTA: 1, 2, 4 or 8 (compile-time in the kernels)
  int kreg = 0;            // W_hh entries per thread in registers
  int ns = 0;              // k-columns of W_hh in shared memory (multiple of 4); ns + kreg >= N
  int hs = 0;              // row stride of the shared h / Delta buffers: N rounded up to 4 (zero padded)
  int ctas = 0;            // ceil(B / br)
  size_t smem_bytes = 0;   // W part (ns * N floats) + double-buffered state (2 * br * hs floats)
};

inline int round_up4(int64_t x) { return static_cast<int>((x + 3) / 4 * 4); }

inline PersistentShape persistent_shape(int64_t N, int64_t B, int br) {
  PersistentShape s;
  s.br = br;
  s.kreg = persistent_kreg(br);
  s.ns = N > s.kreg ? round_up4(N - s.kreg) : 0;
  s.hs = round_up4(N);
  s.ctas = static_cast<int>((B + br - 1) / br);
  s.smem_bytes = sizeof(float) * (static_cast<size_t>(s.ns) * N + 2 * static_cast<size_t>(br) * s.hs);
  return s;
}

// ---- entry points (defined in gemm_path.cu and persistent_<activation>.cu) ------------------------------------
// All launch on `stream`; cuBLAS calls use `handle`, already bound to that stream. Errors throw c10::Error.

// Path (i). Writes p.H, p.R.
template <typename scalar_t, Activation A, bool kNoise>
void gemm_forward(const ForwardParams<scalar_t>& p, cublasHandle_t handle, cudaStream_t stream);
// Path (i). Writes p.dU, p.dh0 (uses p.lam_scratch) and, when p.ddecay_partial, its (ceil(B/32), N) chunks,
// which it zero-fills first.
template <typename scalar_t, Activation A>
void gemm_backward(const BackwardParams<scalar_t>& p, cublasHandle_t handle, cudaStream_t stream);
int64_t gemm_ddecay_chunks(int64_t B);

// Path (ii). Writes p.H, p.R.
template <Activation A, bool kNoise, int BR>
void persistent_forward(const ForwardParams<float>& p, const PersistentShape& s, cudaStream_t stream);
// Path (ii). Writes p.dU, p.dh0 and, when p.ddecay_partial, its (s.ctas, N) chunks (each fully overwritten).
template <Activation A, int BR>
void persistent_backward(const BackwardParams<float>& p, const PersistentShape& s, cudaStream_t stream);

}  // namespace cuda
}  // namespace rate_rnn
