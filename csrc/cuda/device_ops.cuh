// Elementwise device math shared by both CUDA paths: f, f' from r = f(z), and the op's noise draw.
// Same formulas as the CPU kernels (rate_rnn_cpu.cpp); no fast-math intrinsics, so float32 results stay within
// an ulp or so of the host's.
#pragma once

#include "../noise.h"
#include "../rate_rnn.h"

#include <cstdint>

namespace rate_rnn {
namespace cuda {

__device__ __forceinline__ float d_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double d_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float d_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double d_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float d_exp(float x) { return expf(x); }
__device__ __forceinline__ double d_exp(double x) { return exp(x); }
__device__ __forceinline__ float d_expm1(float x) { return expm1f(x); }
__device__ __forceinline__ double d_expm1(double x) { return expm1(x); }
__device__ __forceinline__ float d_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double d_sqrt(double x) { return sqrt(x); }

template <Activation A, typename T>
__device__ __forceinline__ T activate(T z) {
  if constexpr (A == Activation::Identity) return z;
  if constexpr (A == Activation::ReLU) return z > T(0) ? z : T(0);
  if constexpr (A == Activation::Tanh) return d_tanh(z);
  if constexpr (A == Activation::Softplus) return z > T(20) ? z : d_log1p(d_exp(z));  // F.softplus
  if constexpr (A == Activation::ReTanh) return z > T(0) ? d_tanh(z) : T(0);
  if constexpr (A == Activation::Power) return z > T(0) ? z * z : T(0);
}

// f'(z) written in terms of r = f(z) (the saved activation; never z).
template <Activation A, typename T>
__device__ __forceinline__ T derivative_from_rate(T r) {
  if constexpr (A == Activation::Identity) return T(1);
  if constexpr (A == Activation::ReLU) return r > T(0) ? T(1) : T(0);
  if constexpr (A == Activation::Tanh) return T(1) - r * r;
  if constexpr (A == Activation::Softplus) return -d_expm1(-r);
  if constexpr (A == Activation::ReTanh) return r > T(0) ? T(1) - r * r : T(0);
  if constexpr (A == Activation::Power) return T(2) * d_sqrt(r);
}

// noise_std * xi_t[b, n] as the op adds it to z: row t*B + b, column n of the stream `seed` (noise.h), the float
// product rounded once to scalar_t exactly as the CPU kernel does.
template <typename scalar_t>
__device__ __forceinline__ scalar_t noise_term(uint64_t seed, int64_t noise_row, int64_t col, float noise_std) {
  const noise::RowKey key = noise::row_key(seed, static_cast<uint64_t>(noise_row));
  return static_cast<scalar_t>(noise_std * noise::standard_normal(key, static_cast<uint64_t>(col)));
}

}  // namespace cuda
}  // namespace rate_rnn
