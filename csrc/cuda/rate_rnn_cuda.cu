// CUDA implementations of rate_rnn::forward, rate_rnn::backward and rate_rnn::add_normal_ (schema and contract:
// ../rate_rnn.cpp, ../rate_rnn.h): argument checks, the choice between the gemm and the persistent path, the
// post-loop dW_hh GEMMs and the deterministic d(decay) reduction. All work runs on PyTorch's current stream.
//
// RATE_RNN_CUDA_PATH=auto|gemm|persistent (read on every call) forces a path; 'persistent' where it does not
// fit is an error that says why.
#include "blas.cuh"
#include "rate_rnn_cuda.h"
#include "step_kernels.cuh"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <Python.h>

#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

namespace rate_rnn {
namespace cuda {
namespace {

// ---- path choice ------------------------------------------------------------------------------------------------

enum class Path { Gemm, Persistent };

const char* path_name(Path p) { return p == Path::Gemm ? "gemm path" : "persistent path"; }

// Under 'auto', the persistent path is kept while its CTAs (about one per SM: W_hh fills the shared memory) run in
// at most this many waves; past that the per-step cuBLAS GEMM's parallelism wins (an estimate; see benchmarks/).
constexpr int64_t kMaxAutoWaves = 4;

struct Plan {
  Path path = Path::Gemm;
  PersistentShape shape;
  std::string why_not;  // why the persistent path was not taken ("" when it was)
};

enum class Request { Auto, Gemm, Persistent };

Request requested_path() {
  const char* env = std::getenv("RATE_RNN_CUDA_PATH");
  if (env == nullptr || *env == '\0' || std::strcmp(env, "auto") == 0) return Request::Auto;
  if (std::strcmp(env, "gemm") == 0) return Request::Gemm;
  if (std::strcmp(env, "persistent") == 0) return Request::Persistent;
  TORCH_CHECK_VALUE(false, "RATE_RNN_CUDA_PATH must be 'auto', 'gemm' or 'persistent', got '", env, "'");
}

// The persistent path where it fits (and, under 'auto', where the batch is not so large that the GEMMs win), else
// the gemm path. Reads the device's SM count and opt-in shared memory per block at run time.
Plan choose_path(at::ScalarType dtype, int64_t T, int64_t B, int64_t N) {
  const Request request = requested_path();
  Plan plan;
  if (request == Request::Gemm) {
    plan.why_not = "RATE_RNN_CUDA_PATH=gemm";
    return plan;
  }
  const cudaDeviceProp* prop = at::cuda::getCurrentDeviceProperties();
  const int64_t sms = prop->multiProcessorCount;
  if (dtype != at::kFloat) {
    plan.why_not = c10::str("it runs float32 only (got ", dtype, ")");
  } else if (N > kPersistentMaxN) {
    plan.why_not = c10::str("it needs N <= ", kPersistentMaxN, " (one thread per unit), got N = ", N);
  } else if (T > std::numeric_limits<int>::max()) {
    plan.why_not = c10::str("T = ", T, " exceeds its 32-bit step counter");
  } else {
    // Rows per CTA: enough to cover the batch with one CTA per SM, a power of two up to 8. Fewer rows leave more
    // registers for W_hh (less shared memory), so step down until it fits.
    int br = 1;
    while (br < 8 && br * sms < B) br *= 2;
    for (; br >= 1; br /= 2) {
      plan.shape = persistent_shape(N, B, br);
      if (plan.shape.smem_bytes <= prop->sharedMemPerBlockOptin) break;
    }
    if (br == 0) {
      plan.why_not = c10::str("W_hh needs ", persistent_shape(N, B, 1).smem_bytes,
                              " bytes of shared memory per block and this device allows ",
                              prop->sharedMemPerBlockOptin);
    } else if (request == Request::Auto && (plan.shape.ctas + sms - 1) / sms > kMaxAutoWaves) {
      plan.why_not = c10::str("B = ", B, " needs more than ", kMaxAutoWaves, " waves of CTAs (auto)");
    } else {
      plan.path = Path::Persistent;
      return plan;
    }
  }
  TORCH_CHECK(request != Request::Persistent,
              "rate_rnn: RATE_RNN_CUDA_PATH=persistent but the persistent kernel cannot run this call: ", plan.why_not);
  return plan;
}

// ---- compile-time switches ---------------------------------------------------------------------------------------

template <typename F>
void dispatch_activation(int64_t code, F&& body) {
  switch (static_cast<Activation>(code)) {
    case Activation::Identity: return body(std::integral_constant<Activation, Activation::Identity>{});
    case Activation::ReLU: return body(std::integral_constant<Activation, Activation::ReLU>{});
    case Activation::Tanh: return body(std::integral_constant<Activation, Activation::Tanh>{});
    case Activation::Softplus: return body(std::integral_constant<Activation, Activation::Softplus>{});
    case Activation::ReTanh: return body(std::integral_constant<Activation, Activation::ReTanh>{});
    case Activation::Power: return body(std::integral_constant<Activation, Activation::Power>{});
  }
  TORCH_CHECK(false, "rate_rnn: unknown activation code ", code);
}

template <typename F>
void dispatch_bool(bool flag, F&& body) {
  if (flag) return body(std::true_type{});
  return body(std::false_type{});
}

template <typename F>
void dispatch_rows(int br, F&& body) {
  switch (br) {
    case 1: return body(std::integral_constant<int, 1>{});
    case 2: return body(std::integral_constant<int, 2>{});
    case 4: return body(std::integral_constant<int, 4>{});
    case 8: return body(std::integral_constant<int, 8>{});
  }
  TORCH_CHECK(false, "rate_rnn: no persistent kernel for ", br, " rows per CTA");
}

// ---- ops ---------------------------------------------------------------------------------------------------------

std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& U, const at::Tensor& W_hh, const at::Tensor& h0,
                                                const at::Tensor& decay, int64_t activation,
                                                const c10::optional<at::Tensor>& lengths, double noise_std,
                                                int64_t seed) {
  check_forward_args(U, W_hh, h0, decay, activation, lengths, noise_std);
  TORCH_INTERNAL_ASSERT(U.is_cuda());
  const c10::cuda::CUDAGuard guard(U.device());
  // lengths outside [0, T] are not rejected here (that would need a device sync): every kernel reads them as
  // "frozen from step lengths[b] on", which for such values means the same as the nearest end of [0, T].
  at::Tensor H = at::empty_like(U), R = at::empty_like(U);
  Plan plan;
  const char* stage = "choosing a path";
  try {
    plan = choose_path(U.scalar_type(), U.size(0), U.size(1), U.size(2));
    stage = path_name(plan.path);
    const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(U.scalar_type(), "rate_rnn_forward_cuda", [&] {
      ForwardParams<scalar_t> p;
      fill_scan_params(p, U, W_hh, h0, decay, activation, lengths);
      p.noise_std = static_cast<float>(noise_std);
      p.seed = static_cast<uint64_t>(seed);
      p.U = U.data_ptr<scalar_t>();
      p.H = H.data_ptr<scalar_t>();
      p.R = R.data_ptr<scalar_t>();
      dispatch_activation(activation, [&](auto act) {
        constexpr Activation A = decltype(act)::value;
        dispatch_bool(p.noise_std != 0.f, [&](auto noise) {
          constexpr bool kNoise = decltype(noise)::value;
          if constexpr (std::is_same_v<scalar_t, float>) {
            if (plan.path == Path::Persistent) {
              dispatch_rows(plan.shape.br, [&](auto rows) {
                persistent_forward<A, kNoise, decltype(rows)::value>(p, plan.shape, stream);
              });
              return;
            }
          }
          gemm_forward<scalar_t, A, kNoise>(p, at::cuda::getCurrentCUDABlasHandle(), stream);
        });
      });
    });
  } catch (c10::Error& e) {
    TORCH_RETHROW(e, "in rate_rnn::forward (CUDA, ", stage, ")");
  }
  return {H, R};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    const at::Tensor& grad_H, const at::Tensor& H, const at::Tensor& R, const at::Tensor& h0,
    const at::Tensor& W_hh, const at::Tensor& decay, int64_t activation, const c10::optional<at::Tensor>& lengths,
    bool need_ddecay) {
  check_backward_args(grad_H, H, R, h0, W_hh, decay, activation, lengths);
  TORCH_INTERNAL_ASSERT(grad_H.is_cuda());
  const c10::cuda::CUDAGuard guard(grad_H.device());
  const int64_t T = grad_H.size(0), B = grad_H.size(1), N = grad_H.size(2);
  at::Tensor dU = at::empty_like(grad_H), dW = at::empty_like(W_hh), dh0 = at::empty_like(h0);
  at::Tensor ddecay = need_ddecay ? at::empty_like(decay) : at::zeros_like(decay);
  Plan plan;
  const char* stage = "choosing a path";
  try {
    plan = choose_path(grad_H.scalar_type(), T, B, N);
    stage = path_name(plan.path);
    const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    cublasHandle_t handle = at::cuda::getCurrentCUDABlasHandle();
    const int64_t chunks = plan.path == Path::Persistent ? plan.shape.ctas : gemm_ddecay_chunks(B);
    const auto opts = grad_H.options();
    at::Tensor partial = need_ddecay ? at::empty({chunks, N}, opts.dtype(at::kDouble)) : at::Tensor();
    at::Tensor scratch = plan.path == Path::Gemm ? at::empty_like(h0) : at::Tensor();
    AT_DISPATCH_FLOATING_TYPES(grad_H.scalar_type(), "rate_rnn_backward_cuda", [&] {
      BackwardParams<scalar_t> p;
      fill_scan_params(p, grad_H, W_hh, h0, decay, activation, lengths);
      p.grad_H = grad_H.data_ptr<scalar_t>();
      p.H = H.data_ptr<scalar_t>();
      p.R = R.data_ptr<scalar_t>();
      p.dU = dU.data_ptr<scalar_t>();
      p.dh0 = dh0.data_ptr<scalar_t>();
      p.lam_scratch = scratch.defined() ? scratch.data_ptr<scalar_t>() : nullptr;
      p.ddecay_partial = need_ddecay ? partial.data_ptr<double>() : nullptr;
      dispatch_activation(activation, [&](auto act) {
        constexpr Activation A = decltype(act)::value;
        if constexpr (std::is_same_v<scalar_t, float>) {
          if (plan.path == Path::Persistent) {
            dispatch_rows(plan.shape.br, [&](auto rows) {
              persistent_backward<A, decltype(rows)::value>(p, plan.shape, stream);
            });
            return;
          }
        }
        gemm_backward<scalar_t, A>(p, handle, stream);
      });
      // dW_hh = sum_t Delta_t^T h_{t-1}: one GEMM for t = 1 (h0), one over the (T-1)*B rows that read H.
      const int n = blas::as_int(N, "N");
      blas::at_times_b<scalar_t>(handle, blas::as_int(B, "B"), n, p.dU, p.h0, scalar_t(0), dW.data_ptr<scalar_t>());
      if (T > 1) {
        blas::at_times_b<scalar_t>(handle, blas::as_int((T - 1) * B, "(T-1)*B"), n, p.dU + B * N, p.H, scalar_t(1),
                                   dW.data_ptr<scalar_t>());
      }
      if (need_ddecay) {  // fixed-order sums: over chunks per unit, then (scalar decay) over units
        using namespace kernels;
        at::Tensor sums = at::empty({N}, opts.dtype(at::kDouble));
        const unsigned blocks = static_cast<unsigned>((N + kReduceThreads - 1) / kReduceThreads);
        sum_chunks_kernel<<<blocks, kReduceThreads, 0, stream>>>(partial.data_ptr<double>(), chunks, N,
                                                                 sums.data_ptr<double>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        finish_ddecay_kernel<scalar_t><<<1, kReduceThreads, 0, stream>>>(sums.data_ptr<double>(), N, decay.dim() == 1,
                                                                        ddecay.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
  } catch (c10::Error& e) {
    TORCH_RETHROW(e, "in rate_rnn::backward (CUDA, ", stage, ")");
  }
  return {dU, dW, dh0, ddecay};
}

void add_normal_cuda(at::Tensor self, double std, int64_t seed) {
  check_add_normal_args(self);
  if (self.numel() == 0) return;
  const c10::cuda::CUDAGuard guard(self.device());
  const int64_t cols = self.dim() == 0 ? 1 : self.size(-1);
  const int64_t numel = self.numel();
  const int threads = 256;
  const int64_t max_blocks = 8 * static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->multiProcessorCount);
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((numel + threads - 1) / threads, max_blocks));
  AT_DISPATCH_FLOATING_TYPES(self.scalar_type(), "rate_rnn_add_normal_cuda", [&] {
    kernels::add_normal_kernel<scalar_t><<<blocks, threads, 0, at::cuda::getCurrentCUDAStream()>>>(
        self.data_ptr<scalar_t>(), numel, cols, static_cast<float>(std), static_cast<uint64_t>(seed));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(rate_rnn, CUDA, m) {
  m.impl("forward", &forward_cuda);
  m.impl("backward", &backward_cuda);
  m.impl("add_normal_", &add_normal_cuda);
}

}  // namespace cuda
}  // namespace rate_rnn

// `import rate_rnn._C_cuda` runs the registration above; the module itself holds nothing.
extern "C" {
PyObject* PyInit__C_cuda(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C_cuda", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
