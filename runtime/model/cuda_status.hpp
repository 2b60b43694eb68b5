#pragma once
// A CUDA runtime or cuBLAS status from the kernels (troupe::cuda::dev_status) as a troupe error,
// where it is met: out of memory stays out_of_memory, a missing driver or device is unavailable, the
// rest (a failed launch, an illegal address) is internal.

#include <string>
#include <string_view>

#include "kernels/cuda/cuda_check.hpp"
#include "runtime/core/error.hpp"

namespace troupe {

/// `what` names the call and the device ("cuda:0: rms_norm"); the message adds the library's name and
/// text of the error.
inline status cuda_status(cuda::dev_status s, std::string_view what) {
  if (s.ok()) return {};
  errc code = errc::internal;
  if (s.from == cuda::dev_status::library::cuda) {
    switch (static_cast<cudaError_t>(s.code)) {
      case cudaErrorMemoryAllocation: code = errc::out_of_memory; break;
      case cudaErrorNoDevice:
      case cudaErrorInsufficientDriver:
      case cudaErrorInvalidDevice:
      case cudaErrorDevicesUnavailable:
      case cudaErrorSystemDriverMismatch:
      case cudaErrorCompatNotSupportedOnDevice:
      case cudaErrorNoKernelImageForDevice: code = errc::unavailable; break;
      default: break;
    }
  } else if (static_cast<cublasStatus_t>(s.code) == CUBLAS_STATUS_ALLOC_FAILED) {
    code = errc::out_of_memory;
  }
  return make_error(code, std::string(what) + ": " + s.name() + ": " + s.message());
}

inline status cuda_status(cudaError_t e, std::string_view what) { return cuda_status(cuda::check(e), what); }

}  // namespace troupe
