// CPU implementation of rate_rnn::forward / rate_rnn::backward (contract in rate_rnn.h).
//
// One GEMM per step (h_{t-1} W_hh^T forward, Delta_t W_hh backward) and one fused elementwise pass per step;
// no Python per time step. dW_hh is one GEMM over all T*B rows after the backward loop. In float32 the per-step
// GEMMs use W_hh packed once per call (MKL's packed GEMM, which x86 builds of torch carry) instead of re-packing
// it at every step; elsewhere, or with RATE_RNN_CPU_GEMM=aten, they are ATen GEMMs.
#include "fast_math.h"
#include "noise.h"
#include "rate_rnn.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/EmptyTensor.h>
#include <c10/core/impl/alloc_cpu.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <torch/library.h>

#include <dlfcn.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace rate_rnn {
namespace {

template <Activation A, typename T>
inline T activate(T z) {
  if constexpr (A == Activation::Identity) return z;
  if constexpr (A == Activation::ReLU) return z > T(0) ? z : T(0);
  if constexpr (A == Activation::Tanh) return std::tanh(z);
  if constexpr (A == Activation::Softplus) {
    if constexpr (std::is_same_v<T, float>) return fast::softplus(z);
    return z > T(20) ? z : std::log1p(std::exp(z));  // F.softplus
  }
  if constexpr (A == Activation::ReTanh) return z > T(0) ? std::tanh(z) : T(0);
  if constexpr (A == Activation::Power) return z > T(0) ? z * z : T(0);
}

// f'(z) written in terms of r = f(z).
template <Activation A, typename T>
inline T derivative_from_rate(T r) {
  if constexpr (A == Activation::Identity) return T(1);
  if constexpr (A == Activation::ReLU) return r > T(0) ? T(1) : T(0);
  if constexpr (A == Activation::Tanh) return T(1) - r * r;
  if constexpr (A == Activation::Softplus) {  // sigmoid(z) = 1 - exp(-softplus(z))
    if constexpr (std::is_same_v<T, float>) return fast::softplus_derivative(r);
    return -std::expm1(-r);
  }
  if constexpr (A == Activation::ReTanh) return r > T(0) ? T(1) - r * r : T(0);
  if constexpr (A == Activation::Power) return T(2) * std::sqrt(r);
}

template <typename F>
void dispatch_activation(Activation a, F&& body) {
  switch (a) {
    case Activation::Identity: return body(std::integral_constant<Activation, Activation::Identity>{});
    case Activation::ReLU: return body(std::integral_constant<Activation, Activation::ReLU>{});
    case Activation::Tanh: return body(std::integral_constant<Activation, Activation::Tanh>{});
    case Activation::Softplus: return body(std::integral_constant<Activation, Activation::Softplus>{});
    case Activation::ReTanh: return body(std::integral_constant<Activation, Activation::ReTanh>{});
    case Activation::Power: return body(std::integral_constant<Activation, Activation::Power>{});
  }
  TORCH_CHECK(false, "rate_rnn: unknown activation code ", static_cast<int64_t>(a));
}

// One row of a forward step. z holds h_{t-1} W_hh^T on entry and r_t = f(z + u + noise) on exit.
template <Activation A, typename scalar_t>
void forward_row(const scalar_t* __restrict hp, const scalar_t* __restrict u, scalar_t* __restrict z,
                 scalar_t* __restrict h,
                 const scalar_t* __restrict d, const scalar_t* __restrict one_minus_d, int64_t N, bool frozen,
                 float noise_std, noise::RowKey key) {
  if (frozen) {  // row finished: h frozen, r unused
    for (int64_t n = 0; n < N; ++n) {
      z[n] = scalar_t(0);
      h[n] = hp[n];
    }
    return;
  }
  if (noise_std != 0.f) noise::add_to_row(z, N, key, noise_std);
  for (int64_t n = 0; n < N; ++n) {
    const scalar_t r = activate<A>(z[n] + u[n]);
    z[n] = r;
    h[n] = d[n] * hp[n] + one_minus_d[n] * r;
  }
}

// One row of a backward step: Delta_t = Lambda_t (1-d) f'(r_t); Lambda_{t-1} (before the GEMM) = G_{t-1} + d Lambda_t;
// dd += Lambda_t (h_{t-1} - r_t). Frozen rows: Delta 0 and the adjoint carried through unchanged.
template <Activation A, typename scalar_t>
void backward_row(const scalar_t* __restrict lam, const scalar_t* __restrict g_prev, const scalar_t* __restrict hp,
                  const scalar_t* __restrict r, scalar_t* __restrict delta, scalar_t* __restrict lam_prev,
                  const scalar_t* __restrict d, const scalar_t* __restrict one_minus_d, int64_t N, bool frozen,
                  double* __restrict dd) {
  if (frozen) {
    for (int64_t n = 0; n < N; ++n) {
      delta[n] = scalar_t(0);
      lam_prev[n] = lam[n];
    }
  } else {
    for (int64_t n = 0; n < N; ++n) {
      delta[n] = lam[n] * one_minus_d[n] * derivative_from_rate<A>(r[n]);
      lam_prev[n] = d[n] * lam[n];
    }
    if (dd != nullptr) {
      for (int64_t n = 0; n < N; ++n) dd[n] += static_cast<double>(lam[n] * (hp[n] - r[n]));
    }
  }
  if (g_prev != nullptr) {
    for (int64_t n = 0; n < N; ++n) lam_prev[n] += g_prev[n];
  }
}


// d and 1-d per unit, so the inner loops index one array whatever the decay's shape.
template <typename scalar_t>
void expand_decay(const ScanParams<scalar_t>& p, std::vector<scalar_t>& d, std::vector<scalar_t>& one_minus_d) {
  d.resize(p.N);
  one_minus_d.resize(p.N);
  for (int64_t n = 0; n < p.N; ++n) {
    d[n] = p.per_unit_decay ? p.decay[n] : p.decay[0];
    one_minus_d[n] = scalar_t(1) - d[n];
  }
}

void check_lengths_range(const c10::optional<at::Tensor>& lengths, int64_t T) {
  if (!lengths.has_value() || lengths->numel() == 0) return;
  const int64_t lo = lengths->min().item<int64_t>(), hi = lengths->max().item<int64_t>();
  TORCH_CHECK_VALUE(lo >= 0 && hi <= T, "rate_rnn: lengths must lie in [0, T=", T, "], got values in [", lo, ", ",
                    hi, "]");
}

// The op's large outputs (H, R, dU: T*B*N elements each) come from blocks freed by earlier calls. glibc hands
// freed multi-megabyte blocks back to the operating system, so a fresh one page-faults on first touch, and on
// virtual machines that cost ~10% of a call. Blocks of at least kMinBytes are kept (sizes rounded up to 1/8 of
// their power of two, so that sequences of nearby lengths share them), up to kMaxCachedBytes in all.
class BlockCache final : public c10::Allocator {
 public:
  static BlockCache& get() {
    static BlockCache* cache = new BlockCache();  // leaked: tensors may be freed during static destruction
    return *cache;
  }

  // An uninitialised contiguous tensor, like at::empty(sizes, like.options()).
  at::Tensor empty(at::IntArrayRef sizes, const at::Tensor& like) {
    return at::detail::empty_generic(sizes, this, c10::DispatchKeySet(c10::DispatchKey::CPU), like.scalar_type(),
                                     c10::nullopt);
  }

  at::DataPtr allocate(size_t bytes) override {
    if (bytes == 0) return {nullptr, nullptr, &release, at::Device(at::kCPU)};
    const size_t size = rounded(bytes);
    void* block = nullptr;
    if (size >= kMinBytes) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end()) {
        block = it->second;
        free_.erase(it);
        cached_bytes_ -= size;
      }
    }
    if (block == nullptr) block = c10::alloc_cpu(size);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      sizes_[block] = size;
    }
    return {block, block, &release, at::Device(at::kCPU)};
  }

  at::DeleterFnPtr raw_deleter() const override { return &release; }

  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }

 private:
  static constexpr size_t kMinBytes = size_t{1} << 20, kMaxCachedBytes = size_t{256} << 20;

  static size_t rounded(size_t bytes) {
    if (bytes < kMinBytes) return bytes;
    size_t step = size_t{1} << (63 - __builtin_clzll(bytes) - 3);  // 1/8 of the largest power of two <= bytes
    return (bytes + step - 1) / step * step;
  }

  static void release(void* block) {
    BlockCache& cache = get();
    std::unique_lock<std::mutex> lock(cache.mutex_);
    auto it = cache.sizes_.find(block);
    TORCH_INTERNAL_ASSERT(it != cache.sizes_.end(), "rate_rnn: freeing a block the cache did not hand out");
    const size_t size = it->second;
    cache.sizes_.erase(it);
    if (size >= kMinBytes && cache.cached_bytes_ + size <= kMaxCachedBytes) {
      cache.free_.emplace(size, block);
      cache.cached_bytes_ += size;
      return;
    }
    lock.unlock();
    c10::free_cpu(block);
  }

  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  std::unordered_map<void*, size_t> sizes_;
  size_t cached_bytes_ = 0;
};

// MKL's packed single-precision GEMM (CBLAS, 32-bit ints), looked up at run time in the torch library already
// loaded, so that builds of torch without MKL (or a future one that hides it) simply use ATen GEMMs.
class PackedSgemm {
 public:
  // The packed GEMM, or nullptr where it is missing or RATE_RNN_CPU_GEMM=aten.
  static const PackedSgemm* get() {
    static const PackedSgemm api = load();
    const char* env = std::getenv("RATE_RNN_CPU_GEMM");
    if (env != nullptr && std::strcmp(env, "aten") == 0) return nullptr;
    return api.compute_ != nullptr ? &api : nullptr;
  }

  // B = op(W) (n = k = N, W (N, N) row-major, op = transpose when `transpose`) packed for products with m-row A.
  std::vector<float> pack(const float* W, int64_t m, int64_t N, bool transpose) const {
    const int im = static_cast<int>(m), in = static_cast<int>(N);
    std::vector<float> packed((get_size_(kBMatrix, im, in, in) + sizeof(float) - 1) / sizeof(float));
    pack_(kRowMajor, kBMatrix, transpose ? kTrans : kNoTrans, im, in, in, 1.0f, W, in, packed.data());
    return packed;
  }

  // C (m, N) = beta * C + A (m, N) * B, B from pack(); all row-major with leading dimension N.
  void compute(const float* A, const std::vector<float>& B, float beta, float* C, int64_t m, int64_t N) const {
    const int im = static_cast<int>(m), in = static_cast<int>(N);
    compute_(kRowMajor, kNoTrans, kPacked, im, in, in, A, in, B.data(), in, beta, C, in);
  }

 private:
  enum : int { kRowMajor = 101, kNoTrans = 111, kTrans = 112, kPacked = 151, kBMatrix = 162 };
  using GetSize = size_t (*)(int, int, int, int);
  using Pack = void (*)(int, int, int, int, int, int, float, const float*, int, float*);
  using Compute = void (*)(int, int, int, int, int, int, const float*, int, const float*, int, float, float*, int);
  GetSize get_size_ = nullptr;
  Pack pack_ = nullptr;
  Compute compute_ = nullptr;

  static PackedSgemm load() {
    PackedSgemm api;
    void* lib = dlopen("libtorch_cpu.so", RTLD_LAZY | RTLD_NOLOAD);
    if (lib == nullptr) return api;
    auto* get_size = reinterpret_cast<GetSize>(dlsym(lib, "cblas_sgemm_pack_get_size"));
    auto* pack = reinterpret_cast<Pack>(dlsym(lib, "cblas_sgemm_pack"));
    auto* compute = reinterpret_cast<Compute>(dlsym(lib, "cblas_sgemm_compute"));
    if (get_size != nullptr && pack != nullptr && compute != nullptr) {
      api.get_size_ = get_size;
      api.pack_ = pack;
      api.compute_ = compute;
    }
    return api;
  }
};

// Rows are independent, so the batch is cut into one shard per thread and each shard runs the WHOLE time loop on
// its own (single-threaded GEMMs, no per-step fork/join). Shards are contiguous row ranges of about equal size.
struct Shards {
  int64_t count, B;
  explicit Shards(int64_t B_) : B(B_) {
    // At least 8 rows per shard: smaller GEMMs lose more to packing than threads gain.
    count = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), B_ / 8));
    if (const char* env = std::getenv("RATE_RNN_CPU_SHARDS")) count = std::max<int64_t>(1, std::atoll(env));
  }
  int64_t begin(int64_t s) const { return s * B / count; }
  int64_t end(int64_t s) const { return (s + 1) * B / count; }
};

std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& U, const at::Tensor& W_hh, const at::Tensor& h0,
                                               const at::Tensor& decay, int64_t activation,
                                               const c10::optional<at::Tensor>& lengths, double noise_std,
                                               int64_t seed) {
  check_forward_args(U, W_hh, h0, decay, activation, lengths, noise_std);
  check_lengths_range(lengths, U.size(0));
  at::Tensor H = BlockCache::get().empty(U.sizes(), U), R = BlockCache::get().empty(U.sizes(), U);
  const at::Tensor W_t = W_hh.t();
  AT_DISPATCH_FLOATING_TYPES(U.scalar_type(), "rate_rnn_forward_cpu", [&] {
    ScanParams<scalar_t> p;
    fill_scan_params(p, U, W_hh, h0, decay, activation, lengths);
    std::vector<scalar_t> d, one_minus_d;
    expand_decay(p, d, one_minus_d);
    const int64_t BN = p.B * p.N;
    const float noise_scale = static_cast<float>(noise_std);
    const uint64_t key = static_cast<uint64_t>(seed);
    scalar_t* Hd = H.data_ptr<scalar_t>();
    scalar_t* Rd = R.data_ptr<scalar_t>();
    const scalar_t* Ud = U.data_ptr<scalar_t>();
    const Shards shards(p.B);
    const at::ThreadLocalState tls;  // workers must see the caller's dispatch state (below autograd, grad mode)
    dispatch_activation(p.activation, [&](auto act) {
      constexpr Activation A = decltype(act)::value;
      at::parallel_for(0, shards.count, 1, [&](int64_t s0, int64_t s1) {
        at::ThreadLocalStateGuard tls_guard(tls);
        for (int64_t s = s0; s < s1; ++s) {
          const int64_t b0 = shards.begin(s), nb = shards.end(s) - b0;
          const PackedSgemm* packed_gemm = std::is_same_v<scalar_t, float> ? PackedSgemm::get() : nullptr;
          std::vector<float> W_t_packed;
          if (packed_gemm != nullptr) {
            W_t_packed = packed_gemm->pack(reinterpret_cast<const float*>(p.W_hh), nb, p.N, /*transpose=*/true);
          }
          for (int64_t t = 0; t < p.T; ++t) {
            const scalar_t* hp = t == 0 ? p.h0 : Hd + (t - 1) * BN;
            // z = h_{t-1} W_hh^T, written where r_t will live
            if (packed_gemm != nullptr) {
              packed_gemm->compute(reinterpret_cast<const float*>(hp + b0 * p.N), W_t_packed, 0.0f,
                                   reinterpret_cast<float*>(Rd + t * BN + b0 * p.N), nb, p.N);
            } else {
              at::Tensor z = R[t].narrow(0, b0, nb);
              at::mm_out(z, (t == 0 ? h0 : H[t - 1]).narrow(0, b0, nb), W_t);
            }
            for (int64_t b = b0; b < b0 + nb; ++b) {
              const int64_t o = t * BN + b * p.N;
              forward_row<A>(hp + b * p.N, Ud + o, Rd + o, Hd + o, d.data(), one_minus_d.data(), p.N,
                             p.lengths != nullptr && t >= p.lengths[b], noise_scale,
                             noise::row_key(key, static_cast<uint64_t>(t * p.B + b)));
            }
          }
        }
      });
    });
  });
  return {H, R};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& grad_H, const at::Tensor& H, const at::Tensor& R, const at::Tensor& h0,
    const at::Tensor& W_hh, const at::Tensor& decay, int64_t activation, const c10::optional<at::Tensor>& lengths,
    bool need_ddecay) {
  check_backward_args(grad_H, H, R, h0, W_hh, decay, activation, lengths);
  check_lengths_range(lengths, grad_H.size(0));
  const int64_t T = grad_H.size(0), B = grad_H.size(1), N = grad_H.size(2);
  at::Tensor dU = BlockCache::get().empty(grad_H.sizes(), grad_H);
  at::Tensor lam = at::empty_like(h0), lam_next = at::empty_like(h0);
  at::Tensor ddecay = at::zeros_like(decay);
  const Shards shards(B);
  const at::ThreadLocalState tls;  // workers must see the caller's dispatch state (below autograd, grad mode)
  AT_DISPATCH_FLOATING_TYPES(grad_H.scalar_type(), "rate_rnn_backward_cpu", [&] {
    ScanParams<scalar_t> p;
    fill_scan_params(p, grad_H, W_hh, h0, decay, activation, lengths);
    std::vector<scalar_t> d, one_minus_d;
    expand_decay(p, d, one_minus_d);
    const int64_t BN = B * N;
    const scalar_t* G = grad_H.data_ptr<scalar_t>();
    const scalar_t* Hd = H.data_ptr<scalar_t>();
    const scalar_t* Rd = R.data_ptr<scalar_t>();
    scalar_t* dUd = dU.data_ptr<scalar_t>();
    // d(decay) partial sums per shard, reduced in shard order afterwards (deterministic for a thread count).
    std::vector<double> dd_partial(need_ddecay ? shards.count * N : 0, 0.0);
    std::copy(G + (T - 1) * BN, G + T * BN, lam.data_ptr<scalar_t>());  // Lambda_T = G_T
    dispatch_activation(p.activation, [&](auto act) {
      constexpr Activation A = decltype(act)::value;
      at::parallel_for(0, shards.count, 1, [&](int64_t s0, int64_t s1) {
        at::ThreadLocalStateGuard tls_guard(tls);
        for (int64_t s = s0; s < s1; ++s) {
          const int64_t b0 = shards.begin(s), nb = shards.end(s) - b0;
          at::Tensor cur = lam.narrow(0, b0, nb), next = lam_next.narrow(0, b0, nb);
          double* dd = need_ddecay ? dd_partial.data() + s * N : nullptr;
          const PackedSgemm* packed_gemm = std::is_same_v<scalar_t, float> ? PackedSgemm::get() : nullptr;
          std::vector<float> W_packed;
          if (packed_gemm != nullptr) {
            W_packed = packed_gemm->pack(reinterpret_cast<const float*>(p.W_hh), nb, N, /*transpose=*/false);
          }
          for (int64_t t = T - 1; t >= 0; --t) {
            const scalar_t* L = cur.data_ptr<scalar_t>();
            scalar_t* Ln = next.data_ptr<scalar_t>();
            for (int64_t b = b0; b < b0 + nb; ++b) {
              const int64_t o = b * N, rel = (b - b0) * N;
              backward_row<A>(L + rel, t == 0 ? nullptr : G + (t - 1) * BN + o,
                              (t == 0 ? p.h0 : Hd + (t - 1) * BN) + o, Rd + t * BN + o, dUd + t * BN + o, Ln + rel,
                              d.data(), one_minus_d.data(), N, p.lengths != nullptr && t >= p.lengths[b], dd);
            }
            if (packed_gemm != nullptr) {  // Lambda_{t-1} += Delta_t W_hh
              packed_gemm->compute(reinterpret_cast<const float*>(dUd + t * BN + b0 * N), W_packed, 1.0f,
                                   reinterpret_cast<float*>(Ln), nb, N);
            } else {
              next.addmm_(dU[t].narrow(0, b0, nb), W_hh);
            }
            std::swap(cur, next);
          }
        }
      });
    });
    if (T % 2 == 1) std::swap(lam, lam_next);  // after T swaps per shard, Lambda_0 sits in lam_next when T is odd
    if (need_ddecay) {
      scalar_t* out = ddecay.data_ptr<scalar_t>();
      double total = 0.0;
      for (int64_t n = 0; n < N; ++n) {
        double sum = 0.0;
        for (int64_t s = 0; s < shards.count; ++s) sum += dd_partial[s * N + n];
        if (p.per_unit_decay) out[n] = static_cast<scalar_t>(sum);
        total += sum;
      }
      if (!p.per_unit_decay) out[0] = static_cast<scalar_t>(total);
    }
  });
  // dW_hh = sum_t Delta_t^T h_{t-1}: one GEMM over the (T-1)*B rows that see H, one for h0.
  at::Tensor dW = at::mm(dU[0].t(), h0);
  if (T > 1) dW.addmm_(dU.slice(0, 1).reshape({(T - 1) * B, N}).t(), H.slice(0, 0, T - 1).reshape({(T - 1) * B, N}));
  return {dU, dW, lam, ddecay};
}

}  // namespace

TORCH_LIBRARY_IMPL(rate_rnn, CPU, m) {
  m.impl("forward", &forward_cpu);
  m.impl("backward", &backward_cpu);
}

}  // namespace rate_rnn
