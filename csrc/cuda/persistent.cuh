// Path (ii) launchers and their explicit instantiations (kernels: persistent_kernels.cuh).
#pragma once

#include "persistent_kernels.cuh"

#include <c10/cuda/CUDAException.h>
#include <c10/util/Exception.h>

#include <mutex>
#include <vector>

namespace rate_rnn {
namespace cuda {

namespace persistent {

// Opt `kernel` into `bytes` of dynamic shared memory on the current device, once per (kernel, device, larger
// size): later calls, e.g. inside a CUDA graph capture, then make no attribute calls at all.
template <auto kernel>
void ensure_smem(size_t bytes) {
  static std::mutex mutex;              // one per kernel (template argument)
  static std::vector<size_t> granted;  // per device index
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mutex);
  if (granted.size() <= static_cast<size_t>(device)) granted.resize(device + 1, 0);
  if (granted[device] >= bytes) return;
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  granted[device] = bytes;
}

}  // namespace persistent

template <Activation A, bool kNoise, int BR>
void persistent_forward(const ForwardParams<float>& p, const PersistentShape& s, cudaStream_t stream) {
  TORCH_INTERNAL_ASSERT(s.br == BR && s.kreg == persistent_kreg(BR) && p.N <= kPersistentMaxN);
  constexpr auto kernel = persistent::forward_kernel<A, kNoise, BR>;
  persistent::ensure_smem<kernel>(s.smem_bytes);
  kernel<<<s.ctas, kPersistentThreads, s.smem_bytes, stream>>>(p, s.ns, s.hs);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <Activation A, int BR>
void persistent_backward(const BackwardParams<float>& p, const PersistentShape& s, cudaStream_t stream) {
  TORCH_INTERNAL_ASSERT(s.br == BR && s.kreg == persistent_kreg(BR) && p.N <= kPersistentMaxN);
  constexpr auto kernel = persistent::backward_kernel<A, BR>;
  persistent::ensure_smem<kernel>(s.smem_bytes);
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
