// The op's schema (the one place it is written) and the noise op. The argument checks shared by every backend
// are in rate_rnn_checks.cpp.
// Backends register their kernels with TORCH_LIBRARY_IMPL: rate_rnn_cpu.cpp (CPU), cuda/rate_rnn_cuda.cu (CUDA).
#include "rate_rnn.h"
#include "noise.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <Python.h>
#include <torch/library.h>

namespace rate_rnn {

namespace {

// self += std * xi with xi the stream `seed` over self viewed as (numel / size(-1), size(-1)).
void add_standard_normal_cpu(at::Tensor& self, double std, int64_t seed) {
  TORCH_CHECK_TYPE(self.scalar_type() == at::kFloat || self.scalar_type() == at::kDouble,
                   "rate_rnn.add_normal_: self must be float32 or float64, got ", self.scalar_type());
  TORCH_CHECK(self.is_contiguous(), "rate_rnn.add_normal_: self must be contiguous");
  if (self.numel() == 0) return;
  const int64_t cols = self.dim() == 0 ? 1 : self.size(-1);
  const int64_t rows = self.numel() / cols;
  const uint64_t key = static_cast<uint64_t>(seed);
  AT_DISPATCH_FLOATING_TYPES(self.scalar_type(), "add_normal_", [&] {
    scalar_t* data = self.data_ptr<scalar_t>();
    at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / cols), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        noise::add_to_row(data + r * cols, cols, noise::row_key(key, static_cast<uint64_t>(r)), static_cast<float>(std));
      }
    });
  });
}

}  // namespace

TORCH_LIBRARY(rate_rnn, m) {
  m.def("forward(Tensor U, Tensor W_hh, Tensor h0, Tensor decay, int activation, Tensor? lengths, "
        "float noise_std, int seed) -> (Tensor, Tensor)");
  m.def("backward(Tensor grad_H, Tensor H, Tensor R, Tensor h0, Tensor W_hh, Tensor decay, int activation, "
        "Tensor? lengths, bool need_ddecay) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("add_normal_(Tensor(a!) self, float std, int seed) -> ()");
}

TORCH_LIBRARY_IMPL(rate_rnn, CPU, m) {
  m.impl("add_normal_", [](at::Tensor self, double std, int64_t seed) { add_standard_normal_cpu(self, std, seed); });
}

}  // namespace rate_rnn

// `import rate_rnn._C` runs the static registrations above; the module itself holds nothing.
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
