#pragma once
// Errors of the CUDA backend's launchers as plain values. Kernels do not depend on runtime/, so a
// launcher returns the failing library's own status; runtime/model/cuda_status.hpp turns it into a
// troupe error where it is met.

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/cuda/cublas_api.hpp"

namespace troupe::cuda {

/// A launcher's outcome: success, or the status code of the CUDA runtime or cuBLAS call that failed.
struct [[nodiscard]] dev_status {
  enum class library : unsigned char { none, cuda, cublas };
  library from = library::none;
  int code = 0;

  bool ok() const noexcept { return from == library::none; }
  explicit operator bool() const noexcept { return ok(); }
  /// The library's message ("cudaErrorMemoryAllocation: out of memory", ...); "" when ok.
  const char* message() const noexcept {
    switch (from) {
      case library::none: return "";
      case library::cuda: return cudaGetErrorString(static_cast<cudaError_t>(code));
      case library::cublas:
        return cublas() ? cublas()->status_string(static_cast<cublasStatus_t>(code)) : cublas_load_error();
    }
    return "";
  }
  /// The error's name ("cudaErrorNoDevice", "CUBLAS_STATUS_NOT_SUPPORTED"); "" when ok.
  const char* name() const noexcept {
    switch (from) {
      case library::none: return "";
      case library::cuda: return cudaGetErrorName(static_cast<cudaError_t>(code));
      case library::cublas:
        return cublas() ? cublas()->status_name(static_cast<cublasStatus_t>(code)) : "CUBLAS_STATUS_NOT_INITIALIZED";
    }
    return "";
  }
};

inline dev_status check(cudaError_t e) noexcept {
  return e == cudaSuccess ? dev_status{} : dev_status{dev_status::library::cuda, static_cast<int>(e)};
}
inline dev_status check(cublasStatus_t s) noexcept {
  return s == CUBLAS_STATUS_SUCCESS ? dev_status{} : dev_status{dev_status::library::cublas, static_cast<int>(s)};
}
/// The outcome of the kernel launches just made on this thread (bad configuration, no device, ...).
inline dev_status last_launch() noexcept { return check(cudaGetLastError()); }
/// An invalid argument found by a launcher before it launched anything.
inline dev_status invalid_argument() noexcept { return check(cudaErrorInvalidValue); }

}  // namespace troupe::cuda

/// Returns the dev_status of a CUDA runtime or cuBLAS call from the current function when it failed.
#define TROUPE_CUDA_TRY(call)                                          \
  do {                                                                 \
    const ::troupe::cuda::dev_status troupe_cuda_s_ = ::troupe::cuda::check(call); \
    if (!troupe_cuda_s_) return troupe_cuda_s_;                        \
  } while (0)
