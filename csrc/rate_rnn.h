// The leaky rate-RNN scan: the one contract shared by every backend (CPU here, CUDA in cuda/).
//
// Dynamics, time-major, t = 1..T, every row b of the batch independent:
//   z_t = U_t + noise_std * xi_t + h_{t-1} W_hh^T        (B x N)
//   r_t = f(z_t)
//   h_t = d * h_{t-1} + (1 - d) * r_t                       (d broadcast over rows)
// U_t = x_t W_ih^T + b is computed by the caller as one large GEMM (autograd handles W_ih, b and x through it).
// xi_t[b, n] = element (row (t-1)*B + b, column n) of the noise stream `seed` (noise.h): drawn inside the op,
// forward only
// (additive noise has no gradient of its own; the backward reads the saved r_t).
// With `lengths`, row b updates only for t <= lengths[b]; afterwards h stays frozen, r_t is stored as 0 and
// every gradient through those steps is zero except the identity carry of h.
//
// Forward  (U, W_hh, h0, decay, activation, lengths?, noise_std, seed) -> (H, R)
//   U       (T, B, N)  input drive, contiguous
//   W_hh    (N, N)     row-major, W_hh[i, j] = weight from unit j to unit i (nn.RNN layout)
//   h0      (B, N)     initial state, contiguous
//   decay   ()  or (N,) d in [0, 1): scalar or one value per unit (heterogeneous time constants)
//   lengths (B,) int64 on the device of U, values in [0, T]; optional
//   H       (T, B, N)  h_1..h_T (h_T = H[T-1] for every row, frozen rows included)
//   R       (T, B, N)  r_1..r_T, saved for the backward (never rebuilt from H: that cancels when d -> 1)
// Backward (grad_H, H, R, h0, W_hh, decay, activation, lengths?, need_ddecay) -> (dU, dW_hh, dh0, ddecay)
//   grad_H  (T, B, N)  dL/dH with the gradient of the returned final state already added to grad_H[T-1]
//   dU      (T, B, N)  = Delta_t = dL/dz_t;   dW_hh (N, N) = sum_t Delta_t^T h_{t-1};   dh0 (B, N)
//   ddecay  shape of decay: sum over rows (and units, for a scalar) of Lambda_t * (h_{t-1} - r_t); zeros unless
//           need_ddecay.
// All tensors share one floating dtype (float32 or float64) and one device. No output aliases an input.
#pragma once

#include <ATen/core/Tensor.h>
#include <cstdint>

namespace rate_rnn {

// Activation codes, in the order of rate_rnn.ACTIVATIONS in Python. f' is always computed from r = f(z):
// relu [r>0]; tanh 1-r^2; softplus 1-exp(-r) (exactly F.softplus, beta 1, threshold 20); retanh [r>0](1-r^2);
// power (relu(z)^2) 2 sqrt(r); identity 1.
enum class Activation : int64_t { Identity = 0, ReLU = 1, Tanh = 2, Softplus = 3, ReTanh = 4, Power = 5 };
constexpr int64_t kNumActivations = 6;

// Plain sizes and raw pointers for one call: host plumbing fills it, kernels read it.
template <typename scalar_t>
struct ScanParams {
  int64_t T = 0, B = 0, N = 0;
  bool per_unit_decay = false;              // decay has N entries (else 1)
  Activation activation = Activation::ReLU;
  float noise_std = 0.f;
  uint64_t seed = 0;
  const int64_t* lengths = nullptr;         // (B,) or null: every row runs all T steps
  const scalar_t* decay = nullptr;          // (1,) or (N,)
  const scalar_t* W_hh = nullptr;           // (N, N) row-major
  const scalar_t* h0 = nullptr;             // (B, N)
};

// Fill the sizes and pointers shared by every backend (``ref`` is U or grad_H, shape (T, B, N)). Inputs checked.
template <typename scalar_t>
void fill_scan_params(ScanParams<scalar_t>& p, const at::Tensor& ref, const at::Tensor& W_hh, const at::Tensor& h0,
                      const at::Tensor& decay, int64_t activation, const c10::optional<at::Tensor>& lengths) {
  p.T = ref.size(0);
  p.B = ref.size(1);
  p.N = ref.size(2);
  p.per_unit_decay = decay.dim() == 1;
  p.activation = static_cast<Activation>(activation);
  p.lengths = lengths.has_value() ? lengths->data_ptr<int64_t>() : nullptr;
  p.decay = decay.data_ptr<scalar_t>();
  p.W_hh = W_hh.data_ptr<scalar_t>();
  p.h0 = h0.data_ptr<scalar_t>();
}

// Argument checks shared by every backend (shapes, dtypes, devices, contiguity, decay range, lengths range).
// Throws c10::Error naming the argument, its shape and the expected one.
void check_forward_args(const at::Tensor& U, const at::Tensor& W_hh, const at::Tensor& h0, const at::Tensor& decay,
                        int64_t activation, const c10::optional<at::Tensor>& lengths, double noise_std);
void check_backward_args(const at::Tensor& grad_H, const at::Tensor& H, const at::Tensor& R, const at::Tensor& h0,
                         const at::Tensor& W_hh, const at::Tensor& decay, int64_t activation,
                         const c10::optional<at::Tensor>& lengths);
// add_normal_: float32/float64, contiguous, rows of at most 2^33 columns (the stream's pair index is 32-bit).
void check_add_normal_args(const at::Tensor& self);

}  // namespace rate_rnn
