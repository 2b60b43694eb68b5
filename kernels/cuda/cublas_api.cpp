#include "kernels/cuda/cublas_api.hpp"

#include <dlfcn.h>

#include <string>

namespace troupe::cuda {
namespace {

struct loaded {
  cublas_api api;
  bool ok = false;
  std::string error;
};

const loaded& load() {
  static const loaded l = [] {
    loaded r;
    const std::string name = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
    void* lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
#ifdef TROUPE_CUDA_LIB_DIR
    if (!lib) lib = dlopen((std::string(TROUPE_CUDA_LIB_DIR) + "/" + name).c_str(), RTLD_NOW | RTLD_LOCAL);
#endif
    if (!lib) {
      const char* e = dlerror();
      r.error = "cannot load " + name + (e ? std::string(": ") + e : std::string());
      return r;
    }
    r.ok = true;
    auto sym = [&](auto& fn, const char* symbol) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, symbol));
      if (!fn && r.ok) {
        r.ok = false;
        r.error = name + " has no " + symbol;
      }
    };
    sym(r.api.create, "cublasCreate_v2");
    sym(r.api.destroy, "cublasDestroy_v2");
    sym(r.api.set_stream, "cublasSetStream_v2");
    sym(r.api.gemm_ex, "cublasGemmEx");
    sym(r.api.status_name, "cublasGetStatusName");
    sym(r.api.status_string, "cublasGetStatusString");
    return r;
  }();
  return l;
}

}  // namespace

const cublas_api* cublas() noexcept { return load().ok ? &load().api : nullptr; }

const char* cublas_load_error() noexcept { return load().error.c_str(); }

}  // namespace troupe::cuda
