#pragma once
// Helpers for the GPU tests: a test without a usable CUDA device is skipped (ctest reports it as
// skipped, never passed), and device buffers that copy to and from host vectors.

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/cuda/cuda_check.hpp"

namespace troupe::cuda::test {

/// Empty when a CUDA device can be used; otherwise why not.
inline std::string no_gpu_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) return std::string("no usable CUDA device: ") + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
  if (n == 0) return "no CUDA device";
  return {};
}

/// A device array of n T, freed on destruction.
template <class T>
class device_vector {
 public:
  explicit device_vector(size_t n) : n_(n) {
    if (n_ > 0) {
      EXPECT_EQ(cudaMalloc(&p_, n_ * sizeof(T)), cudaSuccess);
    }
  }
  explicit device_vector(const std::vector<T>& host) : device_vector(host.size()) {
    if (n_ > 0) {
      EXPECT_EQ(cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
    }
  }
  ~device_vector() {
    if (p_) cudaFree(p_);
  }
  device_vector(const device_vector&) = delete;
  device_vector& operator=(const device_vector&) = delete;

  T* get() const noexcept { return p_; }
  size_t size() const noexcept { return n_; }
  /// Waits for the device and copies the array back.
  std::vector<T> to_host() const {
    std::vector<T> host(n_);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    if (n_ > 0) {
      EXPECT_EQ(cudaMemcpy(host.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    }
    return host;
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace troupe::cuda::test

/// Skips the test (GTEST_SKIP) when there is no usable CUDA device.
#define TROUPE_REQUIRE_GPU()                                                          \
  do {                                                                                \
    const std::string troupe_no_gpu_ = ::troupe::cuda::test::no_gpu_reason();         \
    if (!troupe_no_gpu_.empty()) GTEST_SKIP() << troupe_no_gpu_;                      \
  } while (0)

/// Expects a launcher's dev_status to be ok, naming the error otherwise.
#define EXPECT_DEV_OK(expr)                                                           \
  do {                                                                                \
    const ::troupe::cuda::dev_status troupe_dev_s_ = (expr);                          \
    EXPECT_TRUE(troupe_dev_s_.ok()) << #expr << ": " << troupe_dev_s_.name() << ": " << troupe_dev_s_.message(); \
  } while (0)
