// Branch-free float exp / log1p for the CPU loops: libm calls do not vectorise, and softplus (the paper's main
// activation) would otherwise cost two scalar libm calls per element per step. Accuracy: about 1-2 ulp over the
// ranges used (Cephes expf polynomial after ln2 range reduction; log via the atanh series of noise.h). Used for
// float only; double keeps libm so float64 results stay exact.
#pragma once

#include "noise.h"

#include <cstdint>

namespace rate_rnn {
namespace fast {

// exp(x) for x <= 0; below -87.3 (where exp(x) is no longer a normal float) it returns 0.
inline float exp_nonpositive(float x) {
  const bool underflow = x < -87.3f;
  x = underflow ? -87.3f : x;
  const float k = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;  // x - k ln2 in two parts (Cephes)
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const float value = y * noise::bits_to_float(static_cast<uint32_t>(static_cast<int32_t>(k) + 127) << 23);
  return underflow ? 0.0f : value;
}

// log(1 + u) for u in [0, 1], with the rounding of 1 + u corrected.
inline float log1p_unit(float u) {
  const float w = 1.0f + u;
  return noise::log_unit(w) - ((w - 1.0f) - u) / w;
}

// softplus(z) = max(z, 0) + log1p(exp(-|z|)); equals F.softplus (beta 1, threshold 20) to float rounding.
inline float softplus(float z) {
  const float a = z < 0.f ? -z : z;
  return (z > 0.f ? z : 0.f) + log1p_unit(exp_nonpositive(-a));
}

// sigmoid(z) written in r = softplus(z) >= 0: 1 - exp(-r), by its series where that difference cancels.
inline float softplus_derivative(float r) {
  const float series =
      r * (1.0f - r * (0.5f - r * (1.0f / 6 - r * (1.0f / 24 - r * (1.0f / 120 - r * (1.0f / 720 - r * (1.0f / 5040)))))));
  return r < 0.25f ? series : 1.0f - exp_nonpositive(-r);
}

}  // namespace fast
}  // namespace rate_rnn
