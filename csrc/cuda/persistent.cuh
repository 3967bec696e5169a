// Path (ii) launchers and their explicit instantiations (kernels: persistent_kernels.cuh).
#pragma once

#include "persistent_kernels.cuh"

#include <c10/cuda/CUDAException.h>
#include <c10/util/Exception.h>

namespace rate_rnn {
namespace cuda {

template <Activation A, bool kNoise, int BR>
void persistent_forward(const ForwardParams<float>& p, const PersistentShape& s, cudaStream_t stream) {
  TORCH_INTERNAL_ASSERT(s.br == BR && s.kreg == persistent_kreg(BR) && p.N <= kPersistentMaxN);
  auto kernel = persistent::forward_kernel<A, kNoise, BR>;
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(s.smem_bytes)));
  kernel<<<s.ctas, kPersistentThreads, s.smem_bytes, stream>>>(p, s.ns, s.hs);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <Activation A, int BR>
void persistent_backward(const BackwardParams<float>& p, const PersistentShape& s, cudaStream_t stream) {
  TORCH_INTERNAL_ASSERT(s.br == BR && s.kreg == persistent_kreg(BR) && p.N <= kPersistentMaxN);
  auto kernel = persistent::backward_kernel<A, BR>;
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(s.smem_bytes)));
  kernel<<<s.ctas, kPersistentThreads, s.smem_bytes, stream>>>(p, s.ns, s.hs);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// One translation unit per activation (persistent_<name>.cu) so the kernels compile in parallel.
#define RATE_RNN_PERSISTENT_INSTANTIATE_BR(A, BR)                                                          \
  template void persistent_forward<A, false, BR>(const ForwardParams<float>&, const PersistentShape&,      \
                                                 cudaStream_t);                                            \
  template void persistent_forward<A, true, BR>(const ForwardParams<float>&, const PersistentShape&,       \
                                                cudaStream_t);                                             \
  template void persistent_backward<A, BR>(const BackwardParams<float>&, const PersistentShape&, cudaStream_t);

#define RATE_RNN_PERSISTENT_INSTANTIATE(A)  \
  RATE_RNN_PERSISTENT_INSTANTIATE_BR(A, 1) \
  RATE_RNN_PERSISTENT_INSTANTIATE_BR(A, 2) \
  RATE_RNN_PERSISTENT_INSTANTIATE_BR(A, 4) \
  RATE_RNN_PERSISTENT_INSTANTIATE_BR(A, 8)

}  // namespace cuda
}  // namespace rate_rnn
