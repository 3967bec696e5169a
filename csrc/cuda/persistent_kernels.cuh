// Path (ii) device code: persistent float32 kernels that run all T steps in one launch with W_hh on chip.
//
// Layout (one CTA = kPersistentThreads threads = `BR` batch rows for the whole sequence):
//   thread u  <->  unit u (threads u >= N only help load and then idle at the barriers);
//   W_hh:     k-columns [0, ns) in shared memory as float4 groups, k-columns [ns, ns + KREG) in registers;
//             forward:  w_s[k4 * N + u] = W[u, 4k4 .. 4k4+3]   (thread u's row of W_hh: z = h W^T)
//             backward: w_s[k4 * N + u] = W[4k4 .. 4k4+3, u]   (thread u's column: Lambda += Delta W)
//             so a warp reads 32 consecutive float4 (conflict-free) and the vector it multiplies is read as
//             float4 broadcasts;
//   state:    x_s[2][BR][hs] double-buffered h_{t-1} (forward) or Delta_t (backward), zero-padded to hs, so ONE
//             __syncthreads per step orders all writes of step t before all reads of step t+1;
//   per row:  h (forward) or Lambda (backward) of thread u's unit lives in a register for all T steps.
// Rows are independent, so CTAs never talk to each other: no grid barrier and no co-residency requirement.
// Accumulation is fp32 in a fixed order (bitwise reproducible); d(decay) is summed per thread in double.
// Inputs of step t+1 (U, noise; or R, H, G) are loaded before step t's product so the loads overlap it.
#pragma once

#include "device_ops.cuh"
#include "rate_rnn_cuda.h"

namespace rate_rnn {
namespace cuda {
namespace persistent {

// Independent accumulator chains per row: with few rows, split the k-sum so the FMA latency is hidden.
template <int BR>
constexpr int kChains = BR >= 4 ? 1 : 4 / BR;

// out[b] = sum_k Wk[u] x[b][k] over k < N (Wk: thread u's row/column of W_hh as laid out above).
template <int BR, int KREG>
__device__ __forceinline__ void matvec_rows(const float4* __restrict__ w_s, const float (&w_r)[KREG],
                                            const float* __restrict__ x_s, int N, int u, int ns, int hs,
                                            float (&out)[BR]) {
  constexpr int C = kChains<BR>;
  float acc[BR][C];
#pragma unroll
  for (int b = 0; b < BR; ++b) {
#pragma unroll
    for (int c = 0; c < C; ++c) acc[b][c] = 0.f;
  }
  const int nk4 = ns >> 2;
#pragma unroll 4
  for (int k4 = 0; k4 < nk4; ++k4) {
    const float4 w = w_s[k4 * N + u];
#pragma unroll
    for (int b = 0; b < BR; ++b) {
      const float4 x = *reinterpret_cast<const float4*>(x_s + b * hs + 4 * k4);
      acc[b][0 % C] = fmaf(w.x, x.x, acc[b][0 % C]);
      acc[b][1 % C] = fmaf(w.y, x.y, acc[b][1 % C]);
      acc[b][2 % C] = fmaf(w.z, x.z, acc[b][2 % C]);
      acc[b][3 % C] = fmaf(w.w, x.w, acc[b][3 % C]);
    }
  }
  const int nreg = N - ns;  // k-columns held in registers (<= KREG); the rest of w_r is zero padding
#pragma unroll
  for (int r4 = 0; r4 < KREG / 4; ++r4) {
    if (4 * r4 >= nreg) break;
#pragma unroll
    for (int b = 0; b < BR; ++b) {
      const float4 x = *reinterpret_cast<const float4*>(x_s + b * hs + ns + 4 * r4);
      acc[b][0 % C] = fmaf(w_r[4 * r4 + 0], x.x, acc[b][0 % C]);
      acc[b][1 % C] = fmaf(w_r[4 * r4 + 1], x.y, acc[b][1 % C]);
      acc[b][2 % C] = fmaf(w_r[4 * r4 + 2], x.z, acc[b][2 % C]);
      acc[b][3 % C] = fmaf(w_r[4 * r4 + 3], x.w, acc[b][3 % C]);
    }
  }
#pragma unroll
  for (int b = 0; b < BR; ++b) {
    if constexpr (C == 4) {
      out[b] = (acc[b][0] + acc[b][1]) + (acc[b][2] + acc[b][3]);
    } else if constexpr (C == 2) {
      out[b] = acc[b][0] + acc[b][1];
    } else {
      out[b] = acc[b][0];
    }
  }
}

// Rows past B (last CTA) and units past N get length 0: they never update and are never stored.
template <int BR>
__device__ __forceinline__ void row_lengths(const int64_t* __restrict__ lengths, int64_t row0, int64_t B, int T,
                                            int (&len)[BR]) {
#pragma unroll
  for (int b = 0; b < BR; ++b) {
    const int64_t row = row0 + b;
    int64_t l = row < B ? (lengths != nullptr ? lengths[row] : T) : 0;
    l = l < 0 ? 0 : (l > T ? T : l);  // same semantics as any value outside [0, T]: frozen iff t >= lengths[b]
    len[b] = static_cast<int>(l);
  }
}

// U_t (+ noise) for thread u's unit of each row, 0 where the row does not update at step t.
template <bool kNoise, int BR>
__device__ __forceinline__ void load_drive(const ForwardParams<float>& p, int t, int64_t row0, int u, bool active,
                                           const int (&len)[BR], float (&z)[BR]) {
#pragma unroll
  for (int b = 0; b < BR; ++b) {
    z[b] = 0.f;
    if (active && t < len[b]) {
      const int64_t noise_row = static_cast<int64_t>(t) * p.B + row0 + b;
      z[b] = __ldg(p.U + noise_row * p.N + u);
      if constexpr (kNoise) z[b] += noise_term<float>(p.seed, noise_row, u, p.noise_std);
    }
  }
}

template <Activation A, bool kNoise, int BR>
__global__ void __launch_bounds__(kPersistentThreads, 1)
    forward_kernel(const ForwardParams<float> p, const int ns, const int hs) {
  constexpr int KREG = persistent_kreg(BR);
  extern __shared__ float4 smem[];
  const int N = static_cast<int>(p.N), T = static_cast<int>(p.T);
  const int64_t B = p.B;
  const int u = threadIdx.x;
  const bool active = u < N;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * BR;
  float4* w_s = smem;
  float* h_s = reinterpret_cast<float*>(smem + static_cast<size_t>(ns / 4) * N);

  for (int idx = threadIdx.x; idx < (ns / 4) * N; idx += blockDim.x) {
    const int k4 = idx / N, i = idx - k4 * N;
    const float* w = p.W_hh + static_cast<int64_t>(i) * N + 4 * k4;
    w_s[idx] = make_float4(__ldg(w), __ldg(w + 1), __ldg(w + 2), __ldg(w + 3));
  }
  float w_r[KREG];
#pragma unroll
  for (int r = 0; r < KREG; ++r) {
    w_r[r] = (active && ns + r < N) ? __ldg(p.W_hh + static_cast<int64_t>(u) * N + ns + r) : 0.f;
  }
  int len[BR];
  row_lengths<BR>(p.lengths, row0, B, T, len);
  float h[BR];
#pragma unroll
  for (int b = 0; b < BR; ++b) {
    h[b] = (active && row0 + b < B) ? p.h0[(row0 + b) * N + u] : 0.f;
    if (u < hs) {  // every element of both buffers has one writer here: h0 or zero padding
      h_s[b * hs + u] = h[b];
      h_s[(BR + b) * hs + u] = 0.f;
    }
  }
  const float d = active ? p.decay[p.per_unit_decay ? u : 0] : 0.f;
  const float one_minus_d = 1.f - d;
  float z_in[BR];
  load_drive<kNoise, BR>(p, 0, row0, u, active, len, z_in);
  __syncthreads();

  for (int t = 0; t < T; ++t) {
    const float* h_cur = h_s + (t & 1) * BR * hs;
    float* h_nxt = h_s + ((t + 1) & 1) * BR * hs;
    float z_next[BR];
    load_drive<kNoise, BR>(p, t + 1, row0, u, active, len, z_next);
    float acc[BR];
    if (active) {
      matvec_rows<BR, KREG>(w_s, w_r, h_cur, N, u, ns, hs, acc);
#pragma unroll
      for (int b = 0; b < BR; ++b) {
        if (row0 + b >= B) continue;
        const int64_t o = (static_cast<int64_t>(t) * B + row0 + b) * N + u;
        if (t < len[b]) {
          const float r = activate<A>(z_in[b] + acc[b]);
          h[b] = d * h[b] + one_minus_d * r;
          p.R[o] = r;
        } else {  // frozen: h stays, r stored as 0
          p.R[o] = 0.f;
        }
        p.H[o] = h[b];
        h_nxt[b * hs + u] = h[b];
      }
    }
    __syncthreads();
#pragma unroll
    for (int b = 0; b < BR; ++b) z_in[b] = z_next[b];
  }
}

// r_t, h_{t-1}, G_{t-1} of thread u's unit for each row (what step t of the backward reads).
template <int BR>
__device__ __forceinline__ void load_adjoint_inputs(const BackwardParams<float>& p, int t, int64_t row0, int u,
                                                    bool active, const int (&len)[BR], float (&r)[BR],
                                                    float (&hp)[BR], float (&g)[BR]) {
  const int64_t BN = p.B * p.N;
#pragma unroll
  for (int b = 0; b < BR; ++b) {
    r[b] = hp[b] = g[b] = 0.f;
    const int64_t row = row0 + b;
    if (!active || row >= p.B) continue;
    const int64_t o = (static_cast<int64_t>(t) * p.B + row) * p.N + u;
    if (t > 0) g[b] = __ldg(p.grad_H + o - BN);
    if (t < len[b]) {
      r[b] = __ldg(p.R + o);
      hp[b] = t > 0 ? __ldg(p.H + o - BN) : __ldg(p.h0 + row * p.N + u);
    }
  }
}

template <Activation A, int BR>
__global__ void __launch_bounds__(kPersistentThreads, 1)
    backward_kernel(const BackwardParams<float> p, const int ns, const int hs) {
  constexpr int KREG = persistent_kreg(BR);
  extern __shared__ float4 smem[];
  const int N = static_cast<int>(p.N), T = static_cast<int>(p.T);
  const int64_t B = p.B;
  const int u = threadIdx.x;
  const bool active = u < N;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * BR;
  float4* w_s = smem;
  float* x_s = reinterpret_cast<float*>(smem + static_cast<size_t>(ns / 4) * N);

  for (int idx = threadIdx.x; idx < (ns / 4) * N; idx += blockDim.x) {
    const int k4 = idx / N, j = idx - k4 * N;
    const float* w = p.W_hh + static_cast<int64_t>(4 * k4) * N + j;
    w_s[idx] = make_float4(__ldg(w), __ldg(w + N), __ldg(w + 2 * N), __ldg(w + 3 * N));
  }
  float w_r[KREG];
#pragma unroll
  for (int r = 0; r < KREG; ++r) {
    w_r[r] = (active && ns + r < N) ? __ldg(p.W_hh + static_cast<int64_t>(ns + r) * N + u) : 0.f;
  }
  int len[BR];
  row_lengths<BR>(p.lengths, row0, B, T, len);
  float lam[BR];
#pragma unroll
  for (int b = 0; b < BR; ++b) {
    lam[b] = (active && row0 + b < B) ? p.grad_H[((T - 1) * B + row0 + b) * N + u] : 0.f;  // Lambda_T = G_T
    if (u < hs) {  // rows that never write (past B, padding) stay zero: Delta 0
      x_s[b * hs + u] = 0.f;
      x_s[(BR + b) * hs + u] = 0.f;
    }
  }
  const float d = active ? p.decay[p.per_unit_decay ? u : 0] : 0.f;
  const float one_minus_d = 1.f - d;
  const bool want_dd = p.ddecay_partial != nullptr;
  double dd = 0.0;
  float r[BR], hp[BR], g[BR];
  load_adjoint_inputs<BR>(p, T - 1, row0, u, active, len, r, hp, g);
  __syncthreads();

  for (int t = T - 1; t >= 0; --t) {
    float* x_cur = x_s + (t & 1) * BR * hs;
    float base[BR];  // Lambda_{t-1} before the product: G_{t-1} + d Lambda_t (frozen: G_{t-1} + Lambda_t)
    if (active) {
#pragma unroll
      for (int b = 0; b < BR; ++b) {
        base[b] = 0.f;
        if (row0 + b >= B) continue;
        const int64_t o = (static_cast<int64_t>(t) * B + row0 + b) * N + u;
        float delta = 0.f;
        if (t < len[b]) {
          delta = lam[b] * one_minus_d * derivative_from_rate<A>(r[b]);
          if (want_dd) dd += static_cast<double>(lam[b] * (hp[b] - r[b]));
          base[b] = g[b] + d * lam[b];
        } else {
          base[b] = g[b] + lam[b];
        }
        p.dU[o] = delta;
        x_cur[b * hs + u] = delta;
      }
    }
    if (t > 0) load_adjoint_inputs<BR>(p, t - 1, row0, u, active, len, r, hp, g);
    __syncthreads();
    if (active) {
      float acc[BR];
      matvec_rows<BR, KREG>(w_s, w_r, x_cur, N, u, ns, hs, acc);
#pragma unroll
      for (int b = 0; b < BR; ++b) lam[b] = base[b] + acc[b];
    }
  }
  if (active) {
#pragma unroll
    for (int b = 0; b < BR; ++b) {
      if (row0 + b < B) p.dh0[(row0 + b) * N + u] = lam[b];
    }
    if (want_dd) p.ddecay_partial[static_cast<int64_t>(blockIdx.x) * N + u] = dd;
  }
}

}  // namespace persistent
}  // namespace cuda
}  // namespace rate_rnn
