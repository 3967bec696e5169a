// Counter-based Gaussian noise shared by the CPU and CUDA implementations.
//
// Element (row, col) of a noise stream with key `seed` is a pure function of (seed, row, col): no generator state,
// so any thread can draw any element, the CPU and the GPU draw the same stream, and a run is reproducible from the
// seed alone. A tensor's stream views it as (numel / size(-1), size(-1)); the op's noise xi_t[b, n] is row
// t*B + b, column n. Columns (2k, 2k+1) share two 32-bit uniforms (u1, u2) and take the cosine and sine halves of
// one Box–Muller transform, so every element is N(0, 1) and the two of a pair are independent.
//
// Uniforms come from a lowbias32 hash (integer mixing only, 32-bit multiplies); log, cos and sin are branch-free
// float polynomials (no libm calls), so that the CPU computes 8 pairs per AVX2 vector. Rows may hold up to 2^33
// columns (pair indices are 32-bit).
// Accuracy: |error| < 4e-7 relative in log and < 2e-7 absolute in cos and sin; the smallest u1 is 2^-32, so
// samples are bounded by |x| < 6.67.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if !defined(__CUDACC__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

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

// cos(2*pi*u) and sin(2*pi*u) for u in [0, 1): u = q/4 + r with q the nearest quarter turn (round half to even)
// and |r| <= 1/8 (exact: u has 24 significant bits), then Taylor series of cos to x^8 and sin to x^9 on
// |x| = |2*pi*r| <= pi/4 (truncation < 3e-8) and the quadrant's swap and signs.
RATE_RNN_HD void sincos_turns(float u, float& c, float& s) {
  const float q = rintf(4.0f * u);
  const float x = 6.28318530717959f * (u - 0.25f * q);
  const float x2 = x * x;
  const float cp = 1.0f + x2 * (-1.0f / 2 + x2 * (1.0f / 24 + x2 * (-1.0f / 720 + x2 * (1.0f / 40320))));
  const float sp = x * (1.0f + x2 * (-1.0f / 6 + x2 * (1.0f / 120 + x2 * (-1.0f / 5040 + x2 * (1.0f / 362880)))));
  const uint32_t quadrant = static_cast<uint32_t>(static_cast<int32_t>(q));
  const bool swap = quadrant & 1U;  // quarter turns 1, 3: cos(x + pi/2) = -sin x, sin(x + pi/2) = cos x
  c = bits_to_float(float_to_bits(swap ? sp : cp) ^ (((quadrant + 1U) & 2U) << 30));  // negative in quadrants 1, 2
  s = bits_to_float(float_to_bits(swap ? cp : sp) ^ ((quadrant & 2U) << 30));         // negative in quadrants 2, 3
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

// The uniforms of pair `pair` of a row: u1 in (0, 1] from 31 bits (signed int -> float converts in SIMD), u2 in
// [0, 1) from 24 bits.
RATE_RNN_HD void pair_uniforms(RowKey key, uint32_t pair, float& u1, float& u2) {
  const uint32_t h = mix32(pair * 0x9e3779b9U ^ key.k0);
  const uint32_t h2 = mix32(h ^ key.k1);
  u1 = (static_cast<float>(static_cast<int32_t>(h >> 1)) + 0.5f) * (1.0f / 2147483648.0f);
  u2 = static_cast<float>(static_cast<int32_t>(h2 >> 8)) * (1.0f / 16777216.0f);
}

// The N(0,1) sample at column `col` (< 2^33) of the row with key `key`: even columns take the cosine half of
// their pair's Box-Muller transform, odd columns the sine half.
RATE_RNN_HD float standard_normal(RowKey key, uint64_t col) {
  float u1, u2, c, s;
  pair_uniforms(key, static_cast<uint32_t>(col >> 1), u1, u2);
  const float radius = sqrtf(-2.0f * log_unit(u1));
  sincos_turns(u2, c, s);
  return radius * ((col & 1U) ? s : c);
}
#if !defined(__CUDACC__) && defined(__AVX2__) && defined(__FMA__)
// AVX2 twin of standard_normal: the same operations on 8 pairs per vector (each pair's hash, log and sqrt shared
// by its cosine and sine halves), W independent vectors interleaved so that the long dependency chain of one
// does not stall the core. Values equal the scalar function's up to FMA contraction (last ulp).
namespace simd {
template <int W>
struct F32 {
  __m256 v[W];
};
template <int W>
struct U32 {
  __m256i v[W];
};
#define RATE_RNN_FOR_W for (int i = 0; i < W; ++i)

inline __m256i set1u(uint32_t x) { return _mm256_set1_epi32(static_cast<int>(x)); }

template <int W>
inline void mix32(U32<W>& x) {
  RATE_RNN_FOR_W x.v[i] = _mm256_xor_si256(x.v[i], _mm256_srli_epi32(x.v[i], 16));
  RATE_RNN_FOR_W x.v[i] = _mm256_mullo_epi32(x.v[i], set1u(0x7feb352dU));
  RATE_RNN_FOR_W x.v[i] = _mm256_xor_si256(x.v[i], _mm256_srli_epi32(x.v[i], 15));
  RATE_RNN_FOR_W x.v[i] = _mm256_mullo_epi32(x.v[i], set1u(0x846ca68bU));
  RATE_RNN_FOR_W x.v[i] = _mm256_xor_si256(x.v[i], _mm256_srli_epi32(x.v[i], 16));
}

template <int W>
inline F32<W> log_unit(const F32<W>& x) {
  U32<W> e;
  F32<W> m, big, s, p, out;
  const __m256 one = _mm256_set1_ps(1.0f);
  RATE_RNN_FOR_W {
    const __m256i bits = _mm256_castps_si256(x.v[i]);
    e.v[i] = _mm256_sub_epi32(_mm256_and_si256(_mm256_srli_epi32(bits, 23), set1u(0xffU)), set1u(127U));
    m.v[i] = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, set1u(0x007fffffU)), set1u(0x3f800000U)));
  }
  RATE_RNN_FOR_W big.v[i] = _mm256_cmp_ps(m.v[i], _mm256_set1_ps(1.41421356f), _CMP_GT_OQ);
  RATE_RNN_FOR_W m.v[i] = _mm256_blendv_ps(m.v[i], _mm256_mul_ps(m.v[i], _mm256_set1_ps(0.5f)), big.v[i]);
  RATE_RNN_FOR_W e.v[i] = _mm256_sub_epi32(e.v[i], _mm256_castps_si256(big.v[i]));  // mask -1 where big: e + 1
  RATE_RNN_FOR_W s.v[i] = _mm256_div_ps(_mm256_sub_ps(m.v[i], one), _mm256_add_ps(m.v[i], one));
  RATE_RNN_FOR_W m.v[i] = _mm256_mul_ps(s.v[i], s.v[i]);  // s^2
  RATE_RNN_FOR_W p.v[i] = _mm256_fmadd_ps(m.v[i], _mm256_set1_ps(1.0f / 9), _mm256_set1_ps(1.0f / 7));
  RATE_RNN_FOR_W p.v[i] = _mm256_fmadd_ps(m.v[i], p.v[i], _mm256_set1_ps(1.0f / 5));
  RATE_RNN_FOR_W p.v[i] = _mm256_fmadd_ps(m.v[i], p.v[i], _mm256_set1_ps(1.0f / 3));
  RATE_RNN_FOR_W p.v[i] = _mm256_fmadd_ps(m.v[i], p.v[i], one);
  RATE_RNN_FOR_W out.v[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(e.v[i]), _mm256_set1_ps(0.693147180559945f),
                                            _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(2.0f), s.v[i]), p.v[i]));
  return out;
}

template <int W>
inline void sincos_turns(const F32<W>& u, F32<W>& c, F32<W>& s) {
  F32<W> x, x2;
  U32<W> quadrant;
  RATE_RNN_FOR_W {
    const __m256 q = _mm256_round_ps(_mm256_mul_ps(_mm256_set1_ps(4.0f), u.v[i]),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);  // as rintf
    quadrant.v[i] = _mm256_cvtps_epi32(q);
    const __m256 r = _mm256_sub_ps(u.v[i], _mm256_mul_ps(_mm256_set1_ps(0.25f), q));
    x.v[i] = _mm256_mul_ps(_mm256_set1_ps(6.28318530717959f), r);
  }
  RATE_RNN_FOR_W x2.v[i] = _mm256_mul_ps(x.v[i], x.v[i]);
  RATE_RNN_FOR_W c.v[i] = _mm256_fmadd_ps(x2.v[i], _mm256_set1_ps(1.0f / 40320), _mm256_set1_ps(-1.0f / 720));
  RATE_RNN_FOR_W s.v[i] = _mm256_fmadd_ps(x2.v[i], _mm256_set1_ps(1.0f / 362880), _mm256_set1_ps(-1.0f / 5040));
  RATE_RNN_FOR_W c.v[i] = _mm256_fmadd_ps(x2.v[i], c.v[i], _mm256_set1_ps(1.0f / 24));
  RATE_RNN_FOR_W s.v[i] = _mm256_fmadd_ps(x2.v[i], s.v[i], _mm256_set1_ps(1.0f / 120));
  RATE_RNN_FOR_W c.v[i] = _mm256_fmadd_ps(x2.v[i], c.v[i], _mm256_set1_ps(-1.0f / 2));
  RATE_RNN_FOR_W s.v[i] = _mm256_fmadd_ps(x2.v[i], s.v[i], _mm256_set1_ps(-1.0f / 6));
  RATE_RNN_FOR_W c.v[i] = _mm256_fmadd_ps(x2.v[i], c.v[i], _mm256_set1_ps(1.0f));
  RATE_RNN_FOR_W s.v[i] = _mm256_mul_ps(x.v[i], _mm256_fmadd_ps(x2.v[i], s.v[i], _mm256_set1_ps(1.0f)));
  RATE_RNN_FOR_W {
    const __m256i qi = quadrant.v[i];
    const __m256 swap = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(qi, set1u(1U)), set1u(1U)));
    const __m256i c_neg = _mm256_and_si256(_mm256_add_epi32(qi, set1u(1U)), set1u(2U));
    const __m256 c_sign = _mm256_castsi256_ps(_mm256_slli_epi32(c_neg, 30));
    const __m256 s_sign = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(qi, set1u(2U)), 30));
    const __m256 cp = c.v[i];
    c.v[i] = _mm256_xor_ps(_mm256_blendv_ps(cp, s.v[i], swap), c_sign);
    s.v[i] = _mm256_xor_ps(_mm256_blendv_ps(s.v[i], cp, swap), s_sign);
  }
}

// Columns 2*k0 .. 2*k0 + 16W - 1 of the row with key `key`, in column order: out[0..2W).
template <int W>
inline void normals(RowKey key, uint32_t k0, __m256* out) {
  U32<W> h, h2;
  F32<W> u1, u2, radius, cos_half, sin_half;
  RATE_RNN_FOR_W {
    const __m256i k = _mm256_add_epi32(set1u(k0 + 8U * i), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    h.v[i] = _mm256_xor_si256(_mm256_mullo_epi32(k, set1u(0x9e3779b9U)), set1u(key.k0));
  }
  mix32<W>(h);
  RATE_RNN_FOR_W h2.v[i] = _mm256_xor_si256(h.v[i], set1u(key.k1));
  mix32<W>(h2);
  RATE_RNN_FOR_W {
    u1.v[i] = _mm256_mul_ps(_mm256_add_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(h.v[i], 1)), _mm256_set1_ps(0.5f)),
                            _mm256_set1_ps(1.0f / 2147483648.0f));
    u2.v[i] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(h2.v[i], 8)), _mm256_set1_ps(1.0f / 16777216.0f));
  }
  radius = log_unit<W>(u1);
  RATE_RNN_FOR_W radius.v[i] = _mm256_sqrt_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), radius.v[i]));
  sincos_turns<W>(u2, cos_half, sin_half);
  RATE_RNN_FOR_W {
    const __m256 c = _mm256_mul_ps(radius.v[i], cos_half.v[i]), s = _mm256_mul_ps(radius.v[i], sin_half.v[i]);
    const __m256 lo = _mm256_unpacklo_ps(c, s), hi = _mm256_unpackhi_ps(c, s);  // c0 s0 c1 s1 | c4 s4 c5 s5 ...
    out[2 * i] = _mm256_permute2f128_ps(lo, hi, 0x20);
    out[2 * i + 1] = _mm256_permute2f128_ps(lo, hi, 0x31);
  }
}
#undef RATE_RNN_FOR_W

// row[0..8) = (kAdd ? row : 0) + std * v, the product rounded once in float as the scalar path does.
template <bool kAdd>
inline void put8(float* row, __m256 std, __m256 v) {
  _mm256_storeu_ps(row, kAdd ? _mm256_fmadd_ps(std, v, _mm256_loadu_ps(row)) : _mm256_mul_ps(std, v));
}
template <bool kAdd>
inline void put8(double* row, __m256 std, __m256 v) {
  const __m256 s = _mm256_mul_ps(std, v);
  const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(s)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(s, 1));
  _mm256_storeu_pd(row, kAdd ? _mm256_add_pd(_mm256_loadu_pd(row), lo) : lo);
  _mm256_storeu_pd(row + 4, kAdd ? _mm256_add_pd(_mm256_loadu_pd(row + 4), hi) : hi);
}
}  // namespace simd

// row[c] += std * xi(key, c) (kAdd false: row[c] = std * xi(key, c)) for c in [c_begin, c_end) of one row of a
// stream; c_begin even (CPU, AVX2).
template <bool kAdd = true, typename scalar_t>
inline void add_to_cols(scalar_t* __restrict row, int64_t c_begin, int64_t c_end, RowKey key, float std) {
  const __m256 vstd = _mm256_set1_ps(std);
  __m256 v[4];
  int64_t c = c_begin;
  for (; c + 32 <= c_end; c += 32) {
    simd::normals<2>(key, static_cast<uint32_t>(c >> 1), v);
    for (int i = 0; i < 4; ++i) simd::put8<kAdd>(row + c + 8 * i, vstd, v[i]);
  }
  for (; c < c_end; c += 16) {
    simd::normals<1>(key, static_cast<uint32_t>(c >> 1), v);
    if (c + 16 <= c_end) {
      simd::put8<kAdd>(row + c, vstd, v[0]);
      simd::put8<kAdd>(row + c + 8, vstd, v[1]);
    } else {
      alignas(32) float tail[16];
      _mm256_store_ps(tail, v[0]);
      _mm256_store_ps(tail + 8, v[1]);
      for (int64_t i = 0; c + i < c_end; ++i) {
        row[c + i] = (kAdd ? row[c + i] : scalar_t(0)) + static_cast<scalar_t>(std * tail[i]);
      }
    }
  }
}
#elif !defined(__CUDACC__)
// row[c] += std * xi(key, c) (kAdd false: row[c] = std * xi(key, c)) for c in [c_begin, c_end) of one row of a
// stream (CPU without AVX2).
template <bool kAdd = true, typename scalar_t>
inline void add_to_cols(scalar_t* __restrict row, int64_t c_begin, int64_t c_end, RowKey key, float std) {
  for (int64_t c = c_begin; c < c_end; ++c) {
    const scalar_t term = static_cast<scalar_t>(std * standard_normal(key, static_cast<uint64_t>(c)));
    row[c] = kAdd ? row[c] + term : term;
  }
}
#endif

#if !defined(__CUDACC__)
// row[c] += std * xi(key, c) for c < n_cols: one whole row.
template <typename scalar_t>
inline void add_to_row(scalar_t* __restrict row, int64_t n_cols, RowKey key, float std) {
  add_to_cols(row, 0, n_cols, key, std);
}
#endif

}  // namespace noise
}  // namespace rate_rnn
