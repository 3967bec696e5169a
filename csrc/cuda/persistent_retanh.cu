// Path (ii) kernels for f = retanh (one file per activation so nvcc builds them in parallel).
#include "persistent.cuh"

namespace rate_rnn {
namespace cuda {
RATE_RNN_PERSISTENT_INSTANTIATE(Activation::ReTanh)
}  // namespace cuda
}  // namespace rate_rnn
