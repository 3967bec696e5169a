// The op's schema (the one place it is written) and the noise op. The argument checks shared by every backend
// are in rate_rnn_checks.cpp.
// Backends register their kernels with TORCH_LIBRARY_IMPL: rate_rnn_cpu.cpp (CPU), cuda/rate_rnn_cuda.cu (CUDA).
#include "rate_rnn.h"
#include "noise.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <Python.h>
#include <torch/library.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace rate_rnn {

namespace {

// self += std * xi with xi the stream `seed` over self viewed as (numel / size(-1), size(-1)). Work is split
// into (row, column chunk) units, so that one long row (a flattened tensor) uses every thread too.
void add_standard_normal_cpu(at::Tensor& self, double std, int64_t seed) {
  check_add_normal_args(self);
  if (self.numel() == 0) return;
  const int64_t cols = self.dim() == 0 ? 1 : self.size(-1);
  const int64_t rows = self.numel() / cols;
  constexpr int64_t kChunk = 8192;  // columns per unit; even, so every unit starts at a pair
  const int64_t chunk = std::min(cols, kChunk);
  const int64_t chunks_per_row = (cols + chunk - 1) / chunk;
  const uint64_t key = static_cast<uint64_t>(seed);
  AT_DISPATCH_FLOATING_TYPES(self.scalar_type(), "add_normal_", [&] {
    scalar_t* data = self.data_ptr<scalar_t>();
    at::parallel_for(0, rows * chunks_per_row, std::max<int64_t>(1, 16384 / chunk), [&](int64_t u0, int64_t u1) {
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t r = u / chunks_per_row, c0 = (u % chunks_per_row) * chunk;
        noise::add_to_cols(data + r * cols, c0, std::min(cols, c0 + chunk),
                           noise::row_key(key, static_cast<uint64_t>(r)), static_cast<float>(std));
      }
    });
  });
}

// add_normal_begin/end: self += std * xi over self viewed as one flat row (exactly add_normal_ on self.view(-1)),
// or self = std * xi when overwrite (as if self were zero), computed in the background while the caller does
// other work. The chunks are shared: a helper thread takes them from the start, and add_normal_end takes the
// rest in the calling thread, so the whole costs at most what add_normal_ in one thread would, even when the
// helper is slow to wake.
struct NoiseAddJob {
  at::Tensor self;  // keeps the storage alive until the last chunk is written
  float* data;
  int64_t n, n_chunks;
  noise::RowKey key;
  float std;
  bool overwrite;
  std::atomic<int64_t> next{0}, done{0};

  static constexpr int64_t kChunk = 8192;  // even: chunks start at pairs

  void work() {
    for (int64_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < n_chunks;) {
      const int64_t begin = c * kChunk, end = std::min(n, begin + kChunk);
      if (overwrite) {
        noise::add_to_cols</*kAdd=*/false>(data, begin, end, key, std);
      } else {
        noise::add_to_cols</*kAdd=*/true>(data, begin, end, key, std);
      }
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

// A spin-wait hint (no system call: a yield per iteration costs more than the wait on virtual machines).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// One detached helper thread per process (re-created after fork). After a job it spins for up to kSpin before
// sleeping: waking a sleeping thread can take a few hundred microseconds on virtual machines, longer than the
// work it would overlap, and batches are usually requested back to back.
class NoiseAddHelper {
 public:
  static NoiseAddHelper& get() {
    static std::mutex creation;
    static NoiseAddHelper* helper = nullptr;  // leaked: the detached thread may outlive static destruction
    std::lock_guard<std::mutex> lock(creation);
    if (helper == nullptr || helper->pid_ != getpid()) helper = new NoiseAddHelper();
    return *helper;
  }

  void submit(std::shared_ptr<NoiseAddJob> job) {
    bool wake;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(job));
      queued_.fetch_add(1, std::memory_order_release);
      wake = sleeping_;
    }
    if (wake) cv_.notify_one();
  }

 private:
  static constexpr auto kSpin = std::chrono::microseconds(1000);

  NoiseAddHelper() : pid_(getpid()) { std::thread([this] { loop(); }).detach(); }

  void loop() {
    for (;;) {
      const auto until = std::chrono::steady_clock::now() + kSpin;
      while (queued_.load(std::memory_order_acquire) == 0 && std::chrono::steady_clock::now() < until) {
        cpu_relax();
      }
      std::shared_ptr<NoiseAddJob> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        sleeping_ = true;
        cv_.wait(lock, [this] { return !queue_.empty(); });
        sleeping_ = false;
        job = std::move(queue_.front());
        queue_.pop_front();
        queued_.fetch_sub(1, std::memory_order_relaxed);
      }
      job->work();
    }
  }

  const pid_t pid_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<NoiseAddJob>> queue_;
  std::atomic<int64_t> queued_{0};
  bool sleeping_ = false;
};

// Jobs between begin and end, by handle. Leaked, never destroyed: a job left pending at exit must not release
// its tensor (possibly numpy memory) after the interpreter is gone.
std::mutex pending_adds_mutex;
auto& pending_adds = *new std::unordered_map<int64_t, std::shared_ptr<NoiseAddJob>>();
int64_t next_add_handle = 1;

int64_t add_normal_begin(at::Tensor self, double std, int64_t seed, bool overwrite) {
  TORCH_CHECK_TYPE(self.scalar_type() == at::kFloat, "rate_rnn.add_normal_begin: self must be float32, got ",
                   self.scalar_type());
  check_add_normal_args(self);
  TORCH_CHECK_VALUE(self.numel() <= (int64_t{1} << 33), "rate_rnn.add_normal_begin: self must have at most 2^33 "
                    "elements, got ", self.numel());
  auto job = std::make_shared<NoiseAddJob>();
  job->self = self;
  job->data = self.data_ptr<float>();
  job->n = self.numel();
  job->n_chunks = (job->n + NoiseAddJob::kChunk - 1) / NoiseAddJob::kChunk;
  job->key = noise::row_key(static_cast<uint64_t>(seed), 0);
  job->std = static_cast<float>(std);
  job->overwrite = overwrite;
  int64_t handle;
  {
    std::lock_guard<std::mutex> lock(pending_adds_mutex);
    handle = next_add_handle++;
    pending_adds.emplace(handle, job);
  }
  if (job->n_chunks > 1 && at::get_num_threads() > 1) NoiseAddHelper::get().submit(job);
  return handle;
}

void add_normal_end(int64_t handle) {
  std::shared_ptr<NoiseAddJob> job;
  {
    std::lock_guard<std::mutex> lock(pending_adds_mutex);
    auto it = pending_adds.find(handle);
    TORCH_CHECK_VALUE(it != pending_adds.end(), "rate_rnn.add_normal_end: nothing in progress with handle ", handle);
    job = std::move(it->second);
    pending_adds.erase(it);
  }
  job->work();
  while (job->done.load(std::memory_order_acquire) < job->n_chunks) cpu_relax();  // at most one chunk (~10 us)
  job->self = at::Tensor();  // released here, not in the helper (a numpy-backed storage takes the GIL to free)
}

}  // namespace

TORCH_LIBRARY(rate_rnn, m) {
  m.def("forward(Tensor U, Tensor W_hh, Tensor h0, Tensor decay, int activation, Tensor? lengths, "
        "float noise_std, int seed) -> (Tensor, Tensor)");
  m.def("backward(Tensor grad_H, Tensor H, Tensor R, Tensor h0, Tensor W_hh, Tensor decay, int activation, "
        "Tensor? lengths, bool need_ddecay) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("add_normal_(Tensor(a!) self, float std, int seed) -> ()");
  // Internal (the task generator's input noise): self is written after begin returns, until end returns.
  m.def("add_normal_begin(Tensor(a!) self, float std, int seed, bool overwrite) -> int");
  m.def("add_normal_end(int handle) -> ()", &add_normal_end);
}

TORCH_LIBRARY_IMPL(rate_rnn, CPU, m) {
  m.impl("add_normal_", [](at::Tensor self, double std, int64_t seed) { add_standard_normal_cpu(self, std, seed); });
  m.impl("add_normal_begin", &add_normal_begin);
}

}  // namespace rate_rnn

// `import rate_rnn._C` runs the static registrations above; the module itself holds nothing.
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
