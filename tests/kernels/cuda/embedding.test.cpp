// get_rows on the GPU against the CPU reference: dequantization is exact, so the floats are equal.
#include "kernels/cuda/embedding.cuh"

#include <vector>

#include "tests/kernels/cpu/test_util.hpp"
#include "tests/kernels/cuda/gpu_test.hpp"

namespace troupe::cuda {
namespace {

using test::device_vector;

TEST(CudaEmbedding, GathersRowsOfEveryWeightTypeAsTheCpuReference) {
  TROUPE_REQUIRE_GPU();
  const int64_t rows = 50, cols = 96;
  const std::vector<int32_t> ids = {0, 49, 7, 7, 23, 1};
  uint32_t seed = 1;
  for (dtype t : cpu::test::all_types) {
    cpu::test::test_weight w(t, rows, cols, seed++);
    device_vector<uint8_t> dw(w.bytes);
    device_vector<int32_t> dids(ids);
    device_vector<float> out(ids.size() * cols);
    EXPECT_DEV_OK(get_rows(cpu::weight_ref{t, rows, cols, dw.get()}, dids.get(), static_cast<int64_t>(ids.size()),
                           out.get(), nullptr));
    const auto got = out.to_host();
    std::vector<float> want(static_cast<size_t>(cols));
    for (size_t i = 0; i < ids.size(); ++i) {
      cpu::ref::get_row(w.ref, ids[i], want.data());
      for (int64_t c = 0; c < cols; ++c)
        ASSERT_EQ(got[i * cols + c], want[c]) << to_string(t) << " id " << ids[i] << " element " << c;
    }
  }
}

TEST(CudaEmbedding, RejectsRowsThatAreNotWholeBlocks) {
  TROUPE_REQUIRE_GPU();
  device_vector<float> out(64);
  const dev_status s = get_rows(cpu::weight_ref{dtype::q8_0, 4, 40, out.get()}, nullptr, 1, out.get(), nullptr);
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace troupe::cuda
