// Argument checks shared by every backend (declared in rate_rnn.h). Compiled into both the CPU module (rate_rnn._C)
// and the CUDA module (rate_rnn._C_cuda), which cannot link rate_rnn.cpp (it holds the one TORCH_LIBRARY).
#include "rate_rnn.h"

#include <c10/util/Exception.h>

#include <string>

namespace rate_rnn {

namespace {

std::string shape_str(const at::Tensor& t) { return c10::str(t.sizes()); }

void check_float_dtype(const at::Tensor& t, const char* name, const at::Tensor& like) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble,
                   "rate_rnn: ", name, " must be float32 or float64, got ", t.scalar_type());
  TORCH_CHECK_TYPE(t.scalar_type() == like.scalar_type(), "rate_rnn: ", name, " has dtype ", t.scalar_type(),
                   " but U has dtype ", like.scalar_type(), "; all tensors must share one dtype");
  TORCH_CHECK(t.device() == like.device(), "rate_rnn: ", name, " is on ", t.device(), " but U is on ", like.device());
  TORCH_CHECK(t.is_contiguous(), "rate_rnn: ", name, " must be contiguous");
}

void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected) {
  TORCH_CHECK_VALUE(t.sizes() == expected, "rate_rnn: ", name, " has shape ", shape_str(t), ", expected ",
                    c10::str(expected));
}

void check_common(const at::Tensor& ref, const char* ref_name, const at::Tensor& W_hh, const at::Tensor& h0,
                  const at::Tensor& decay, int64_t activation, const c10::optional<at::Tensor>& lengths) {
  TORCH_CHECK_VALUE(ref.dim() == 3, "rate_rnn: ", ref_name, " must be (T, B, N), got shape ", shape_str(ref));
  const int64_t T = ref.size(0), B = ref.size(1), N = ref.size(2);
  TORCH_CHECK_VALUE(T >= 1 && B >= 1 && N >= 1, "rate_rnn: ", ref_name, " must have T, B, N >= 1, got shape ",
                    shape_str(ref));
  check_float_dtype(ref, ref_name, ref);
  check_float_dtype(W_hh, "W_hh", ref);
  check_float_dtype(h0, "h0", ref);
  check_float_dtype(decay, "decay", ref);
  check_shape(W_hh, "W_hh", {N, N});
  check_shape(h0, "h0", {B, N});
  TORCH_CHECK_VALUE(decay.dim() == 0 || (decay.dim() == 1 && decay.size(0) == N), "rate_rnn: decay has shape ",
                    shape_str(decay), ", expected () or (", N, ",)");
  TORCH_CHECK_VALUE(activation >= 0 && activation < kNumActivations, "rate_rnn: activation code ", activation,
                    " is not in [0, ", kNumActivations, ")");
  if (lengths.has_value()) {
    const at::Tensor& len = *lengths;
    TORCH_CHECK_TYPE(len.scalar_type() == at::kLong, "rate_rnn: lengths must be int64, got ", len.scalar_type());
    TORCH_CHECK(len.device() == ref.device(), "rate_rnn: lengths is on ", len.device(), " but ", ref_name,
                " is on ", ref.device());
    TORCH_CHECK(len.is_contiguous(), "rate_rnn: lengths must be contiguous");
    check_shape(len, "lengths", {B});
  }
}

}  // namespace

void check_forward_args(const at::Tensor& U, const at::Tensor& W_hh, const at::Tensor& h0, const at::Tensor& decay,
                        int64_t activation, const c10::optional<at::Tensor>& lengths, double noise_std) {
  check_common(U, "U", W_hh, h0, decay, activation, lengths);
  TORCH_CHECK_VALUE(noise_std >= 0, "rate_rnn: noise_std must be >= 0, got ", noise_std);
}

void check_backward_args(const at::Tensor& grad_H, const at::Tensor& H, const at::Tensor& R, const at::Tensor& h0,
                         const at::Tensor& W_hh, const at::Tensor& decay, int64_t activation,
                         const c10::optional<at::Tensor>& lengths) {
  check_common(grad_H, "grad_H", W_hh, h0, decay, activation, lengths);
  check_float_dtype(H, "H", grad_H);
  check_float_dtype(R, "R", grad_H);
  check_shape(H, "H", grad_H.sizes());
  check_shape(R, "R", grad_H.sizes());
}

void check_add_normal_args(const at::Tensor& self) {
  TORCH_CHECK_TYPE(self.scalar_type() == at::kFloat || self.scalar_type() == at::kDouble,
                   "rate_rnn.add_normal_: self must be float32 or float64, got ", self.scalar_type());
  TORCH_CHECK_VALUE(self.is_contiguous(), "rate_rnn.add_normal_: self must be contiguous");
  TORCH_CHECK_VALUE(self.dim() == 0 || self.size(-1) <= (int64_t{1} << 33),
                    "rate_rnn.add_normal_: self's last dimension must be at most 2^33, got ", self.size(-1));
}

}  // namespace rate_rnn
