// Counter-based Gaussian noise shared by the CPU and CUDA implementations.
//
// Element (row, col) of a noise stream with key `seed` is a pure function of (seed, row, col): no generator state,
// so any thread can draw any element, the CPU and the GPU draw the same stream, and a run is reproducible from the
// seed alone. A tensor's stream views it as (numel / size(-1), size(-1)); the op's noise xi_t[b, n] is row
// t*B + b, column n. Columns (2k, 2k+1) share two 32-bit uniforms (u1, u2) and take the cosine and sine halves of
// one Box–Muller transform, so every element is N(0, 1) and the two of a pair are independent.
//
// Uniforms come from a lowbias32 hash (integer mixing only, 32-bit multiplies) so that the CPU loop
// auto-vectorises; log and cos are branch-free float polynomials for the same reason (no libm calls).
// Accuracy: |error| < 4e-7 relative in log and < 2e-7 absolute in cos over the ranges used; the smallest u1 is
// 2^-32, so samples are bounded by |x| < 6.67.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define RATE_RNN_HD __host__ __device__ __forceinline__
#else
#define RATE_RNN_HD inline
#endif

namespace rate_rnn {
namespace noise {

RATE_RNN_HD uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

RATE_RNN_HD float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

RATE_RNN_HD uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

// Natural log for x in (0, 1], normal numbers only: x = m * 2^e with m in [sqrt(1/2), sqrt(2)),
// log(m) = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716, series to s^9 (truncation < 2e-9).
RATE_RNN_HD float log_unit(float x) {
  uint32_t bits = float_to_bits(x);
  int32_t e = static_cast<int32_t>((bits >> 23) & 0xffU) - 127;
  float m = bits_to_float((bits & 0x007fffffU) | 0x3f800000U);  // [1, 2)
  const bool big = m > 1.41421356f;
  m = big ? 0.5f * m : m;
  e = big ? e + 1 : e;
  const float s = (m - 1.0f) / (m + 1.0f);
  const float s2 = s * s;
  const float series = 2.0f * s * (1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9)))));
  return series + static_cast<float>(e) * 0.693147180559945f;
}

// cos(2*pi*t) for any float t, via reduction to [-1/4, 1/4] turns and an even/odd polynomial pair.
RATE_RNN_HD float cos_turns(float t) {
  t = t - static_cast<float>(static_cast<int32_t>(t + (t >= 0 ? 0.5f : -0.5f)));  // [-1/2, 1/2]
  // cos(2πt) = -cos(2π(t ∓ 1/2)); fold |t| > 1/4 onto [-1/4, 1/4] with a sign flip.
  const float a = t < 0 ? -t : t;
  const bool flip = a > 0.25f;
  const float r = flip ? 0.5f - a : a;  // [0, 1/4] turns
  const float x = 6.28318530717959f * r;  // [0, pi/2]
  const float x2 = x * x;
  // Taylor series of cos to x^14 on [0, pi/2]: truncation < 1e-9.
  const float c = 1.0f + x2 * (-1.0f / 2 + x2 * (1.0f / 24 + x2 * (-1.0f / 720 + x2 * (1.0f / 40320 +
                  x2 * (-1.0f / 3628800 + x2 * (1.0f / 479001600 + x2 * (-1.0f / 87178291200.0f)))))));
  return flip ? -c : c;
}

// A noise stream is laid out as rows: element (row, col) of stream `seed`. The per-row key is hashed once
// (64-bit row index), so the inner loop over columns is pure 32-bit integer and float work that vectorises.
struct RowKey {
  uint32_t k0, k1;
};

RATE_RNN_HD RowKey row_key(uint64_t seed, uint64_t row) {
  const uint32_t a = mix32(static_cast<uint32_t>(row) * 0x9e3779b9U ^ static_cast<uint32_t>(seed));
  const uint32_t b = mix32(a ^ (static_cast<uint32_t>(row >> 32) + static_cast<uint32_t>(seed >> 32) * 0x85ebca6bU));
  return {b, mix32(b ^ 0x68e31da4U)};
}

// The N(0,1) sample at column `col` of the row with key `key`.
RATE_RNN_HD float standard_normal(RowKey key, uint32_t col) {
  const uint32_t h = mix32((col >> 1) * 0x9e3779b9U ^ key.k0);
  const uint32_t h2 = mix32(h ^ key.k1);
  // u1 in (0, 1] from 31 bits (signed int -> float converts in SIMD); u2 in [0, 1) from 24 bits.
  const float u1 = (static_cast<float>(static_cast<int32_t>(h >> 1)) + 0.5f) * (1.0f / 2147483648.0f);
  const float u2 = static_cast<float>(static_cast<int32_t>(h2 >> 8)) * (1.0f / 16777216.0f);
  const float radius = sqrtf(-2.0f * log_unit(u1));
  // Odd columns take the sine half: sin(2πu) = cos(2π(u - 1/4)).
  return radius * cos_turns(u2 - 0.25f * static_cast<float>(col & 1U));
}

#if !defined(__CUDACC__)
// row[c] += std * xi(key, c) for c < n_cols: one row of a stream (CPU; the loop vectorises).
template <typename scalar_t>
inline void add_to_row(scalar_t* __restrict row, int64_t n_cols, RowKey key, float std) {
  for (int64_t c = 0; c < n_cols; ++c) {
    row[c] += static_cast<scalar_t>(std * standard_normal(key, static_cast<uint32_t>(c)));
  }
}
#endif

}  // namespace noise
}  // namespace rate_rnn
