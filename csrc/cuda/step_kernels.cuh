// Device code of the small kernels: path (i)'s per-step elementwise kernels, the d(decay) chunk reduction, and
// add_normal_. Launched from gemm_path.cu and rate_rnn_cuda.cu.
#pragma once

#include "device_ops.cuh"
#include "rate_rnn_cuda.h"

namespace rate_rnn {
namespace cuda {
namespace kernels {

constexpr int kStepThreads = 256;
// Backward step tile: 32 units x 8 thread rows, each thread row walking kRowsPerThread batch rows, so a block
// covers 32 batch rows. A d(decay) chunk is one such block row.
constexpr int kBwdTileN = 32, kBwdTileY = 8, kRowsPerThread = 4;
constexpr int kBwdRowsPerBlock = kBwdTileY * kRowsPerThread;

// Step t of the forward: R[t] holds h_{t-1} W_hh^T (GEMM output); add U_t (+ noise), apply f, leak.
template <typename scalar_t, Activation A, bool kNoise>
__global__ void __launch_bounds__(kStepThreads) forward_step_kernel(const ForwardParams<scalar_t> p, int64_t t) {
  const int64_t BN = p.B * p.N;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= BN) return;
  const int64_t b = i / p.N, n = i - b * p.N;
  const int64_t o = t * BN + i;
  const scalar_t hp = t == 0 ? p.h0[i] : p.H[o - BN];
  if (p.lengths != nullptr && t >= p.lengths[b]) {  // row finished: h frozen, r stored as 0
    p.R[o] = scalar_t(0);
    p.H[o] = hp;
    return;
  }
  scalar_t z = p.U[o] + p.R[o];
  if constexpr (kNoise) z += noise_term<scalar_t>(p.seed, t * p.B + b, n, p.noise_std);
  const scalar_t d = p.decay[p.per_unit_decay ? n : 0];
  const scalar_t r = activate<A>(z);
  p.R[o] = r;
  p.H[o] = d * hp + (scalar_t(1) - d) * r;
}

// Step t of the backward, before the GEMM: Delta_t into dU[t]; lam_next = G_{t-1} + d Lambda_t (frozen rows:
// Delta 0, G_{t-1} + Lambda_t); d(decay) chunk sums += Lambda_t (h_{t-1} - r_t), reduced over the block's rows
// in a fixed order and added by the one thread that owns (chunk, n) -- deterministic without atomics.
template <typename scalar_t, Activation A>
__global__ void __launch_bounds__(kBwdTileN* kBwdTileY)
    backward_step_kernel(const BackwardParams<scalar_t> p, int64_t t, const scalar_t* __restrict__ lam,
                         scalar_t* __restrict__ lam_next, double* __restrict__ dd) {
  const int64_t N = p.N, B = p.B, BN = B * N;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kBwdTileN + threadIdx.x;
  double acc = 0.0;
  if (n < N) {
    const scalar_t d = p.decay[p.per_unit_decay ? n : 0];
    const scalar_t one_minus_d = scalar_t(1) - d;
    for (int k = 0; k < kRowsPerThread; ++k) {
      const int64_t b = static_cast<int64_t>(blockIdx.y) * kBwdRowsPerBlock + threadIdx.y + kBwdTileY * k;
      if (b >= B) break;
      const int64_t i = b * N + n, o = t * BN + i;
      const scalar_t lam_t = lam[i];
      const scalar_t g = t > 0 ? p.grad_H[o - BN] : scalar_t(0);
      if (p.lengths != nullptr && t >= p.lengths[b]) {  // h_t = h_{t-1}: the adjoint passes through
        p.dU[o] = scalar_t(0);
        lam_next[i] = g + lam_t;
        continue;
      }
      const scalar_t r = p.R[o];
      p.dU[o] = lam_t * one_minus_d * derivative_from_rate<A>(r);
      lam_next[i] = g + d * lam_t;
      if (dd != nullptr) {
        const scalar_t hp = t > 0 ? p.H[o - BN] : p.h0[i];
        acc += static_cast<double>(lam_t * (hp - r));
      }
    }
  }
  if (dd != nullptr) {  // uniform over the block
    __shared__ double part[kBwdTileY][kBwdTileN];
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && n < N) {
      double s = 0.0;
#pragma unroll
      for (int y = 0; y < kBwdTileY; ++y) s += part[y][threadIdx.x];
      dd[blockIdx.y * N + n] += s;
    }
  }
}

// ---- d(decay) reduction and add_normal_ ----------------------------------------------------------------------

constexpr int kReduceThreads = 256;

// sums[n] = sum over chunks c (in order) of partial[c, n]. (static: a non-template kernel in a header.)
static __global__ void __launch_bounds__(kReduceThreads)
    sum_chunks_kernel(const double* __restrict__ partial, int64_t chunks, int64_t N, double* __restrict__ sums) {
  const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n >= N) return;
  double s = 0.0;
  for (int64_t c = 0; c < chunks; ++c) s += partial[c * N + n];
  sums[n] = s;
}

// out = sums (per-unit decay) or out[0] = sum_n sums[n] (scalar decay), by one block in a fixed order.
template <typename scalar_t>
__global__ void __launch_bounds__(kReduceThreads)
    finish_ddecay_kernel(const double* __restrict__ sums, int64_t N, bool per_unit, scalar_t* __restrict__ out) {
  __shared__ double part[kReduceThreads];
  double s = 0.0;
  for (int64_t n = threadIdx.x; n < N; n += kReduceThreads) {
    if (per_unit) out[n] = static_cast<scalar_t>(sums[n]);
    s += sums[n];
  }
  part[threadIdx.x] = s;
  __syncthreads();
  for (int w = kReduceThreads / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  if (!per_unit && threadIdx.x == 0) out[0] = static_cast<scalar_t>(part[0]);
}

// self[row, col] += std * xi(seed; row, col), self viewed as (numel / cols, cols) -- the CPU kernel's stream.
template <typename scalar_t>
__global__ void add_normal_kernel(scalar_t* __restrict__ data, int64_t numel, int64_t cols, float std,
                                  uint64_t seed) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / cols;
    data[i] += noise_term<scalar_t>(seed, row, i - row * cols, std);
  }
}

}  // namespace kernels
}  // namespace cuda
}  // namespace rate_rnn
