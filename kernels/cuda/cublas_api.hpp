#pragma once
// cuBLAS, loaded when first needed instead of linked: its libraries (~600 MB) add about 0.1 s to the
// start of every process that links them, GPU or not, and a CUDA build of troupe should start (and
// run on the CPU) on a machine that does not have them.

#include <cublas_v2.h>

namespace troupe::cuda {

/// The cuBLAS entry points troupe uses.
struct cublas_api {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  // Spelt out: the header overloads cublasGemmEx for C++ (a cudaDataType compute type, deprecated).
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                            const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                            cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
  decltype(&cublasGetStatusName) status_name = nullptr;
  decltype(&cublasGetStatusString) status_string = nullptr;
};

/// libcublas.so.<major> of the toolkit troupe was built with, loaded on the first call (from the
/// library path, else the toolkit's directory); nullptr when it cannot be loaded.
const cublas_api* cublas() noexcept;
/// Why cublas() is nullptr ("" when it is not).
const char* cublas_load_error() noexcept;

}  // namespace troupe::cuda
