// What the CUDA runner does on any machine, GPU or not: cuBLAS loads from the toolkit it was built
// with, and a device that cannot be used is an `unavailable` error naming it, never a crash. (Its
// forward pass is checked against the CPU in tests/kernels/cuda, which need a GPU.)
#include <gtest/gtest.h>

#include "runtime/model/model_runner.hpp"

#if TROUPE_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/cublas_api.hpp"
#include "runtime/model/cuda_model.hpp"
#endif

namespace troupe {
namespace {

#if TROUPE_HAVE_CUDA
bool gpu_present() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

TEST(CudaModel, CublasLoadsAtRunTime) {
  ASSERT_NE(cuda::cublas(), nullptr) << cuda::cublas_load_error();
  EXPECT_STREQ(cuda::cublas_load_error(), "");
  EXPECT_STREQ(cuda::cublas()->status_name(CUBLAS_STATUS_NOT_SUPPORTED), "CUBLAS_STATUS_NOT_SUPPORTED");
}

TEST(CudaModel, AMissingDeviceIsUnavailableAndNamed) {
  const std::string stories = std::string(TROUPE_SHARED_DIR) + "/models/stories260K/stories260K.gguf";
  auto w = load_model_weights(stories);
  ASSERT_TRUE(w) << w.error().what();
  const int index = gpu_present() ? 1000 : 0;  // with a GPU, one that no machine has
  auto m = cuda_model::create(std::move(*w), index, kv_pool_config{});
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code(), errc::unavailable);
  EXPECT_EQ(m.error().message().rfind("cuda:" + std::to_string(index) + ": ", 0), 0u) << m.error().what();
}
#else
TEST(CudaModel, ABuildWithoutCudaSaysSo) {
  const auto st = check_device(device_spec{device_spec::kind_t::cuda, 0});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), errc::unavailable);
  EXPECT_NE(st.error().message().find("no CUDA backend"), std::string::npos) << st.error().what();
}
#endif

TEST(DeviceSpec, ParsesCpuCudaAndCudaN) {
  EXPECT_EQ(*parse_device("cpu"), device_spec{});
  EXPECT_EQ(*parse_device("cuda"), (device_spec{device_spec::kind_t::cuda, 0}));
  EXPECT_EQ(*parse_device("cuda:3"), (device_spec{device_spec::kind_t::cuda, 3}));
  EXPECT_EQ(parse_device("cuda:3")->to_string(), "cuda:3");
  for (const char* bad : {"", "gpu", "cuda:", "cuda:-1", "cuda:1x", "CPU", "tpu"}) {
    auto d = parse_device(bad);
    ASSERT_FALSE(d) << bad;
    EXPECT_NE(d.error().message().find(std::string("'") + bad + "'"), std::string::npos) << d.error().what();
  }
}

}  // namespace
}  // namespace troupe
