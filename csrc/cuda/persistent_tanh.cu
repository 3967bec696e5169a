// Path (ii) kernels for f = tanh (one file per activation so nvcc builds them in parallel).
#include "persistent.cuh"

namespace rate_rnn {
namespace cuda {
RATE_RNN_PERSISTENT_INSTANTIATE(Activation::Tanh)
}  // namespace cuda
}  // namespace rate_rnn
