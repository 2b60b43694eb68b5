// The NCCL communicator on this machine's GPUs: a group of one (a single GPU) leaves data as it is,
// a group of every GPU sums each rank's data, and bad peers are refused. Skipped without a GPU.
#include "runtime/comm/nccl_communicator.hpp"

#include <gtest/gtest.h>

#include <numeric>
#include <thread>
#include <vector>

#include "tests/kernels/cuda/gpu_test.hpp"

namespace troupe {
namespace {

std::vector<float> all_reduced(nccl_communicator& c, const std::vector<float>& host) {
  EXPECT_EQ(cudaSetDevice(c.device()), cudaSuccess);
  cuda::test::device_vector<float> d(host);
  EXPECT_TRUE(c.all_reduce_sum(d.get(), host.size()));
  return d.to_host();
}

TEST(NcclCommunicator, AGroupOfOneGpuKeepsTheData) {
  TROUPE_REQUIRE_GPU();
  auto group = nccl_communicator::create_local({0});
  ASSERT_TRUE(group) << group.error().what();
  nccl_communicator& c = *(*group)[0];
  EXPECT_EQ(c.rank(), 0);
  EXPECT_EQ(c.world_size(), 1);
  EXPECT_EQ(c.buffers(), buffer_space::device);
  const std::vector<float> data = {1.5f, -2.0f, 3.25f, 0.0f};
  EXPECT_EQ(all_reduced(c, data), data);
  EXPECT_FALSE(c.send(nullptr, 4, 0));  // no peer but itself
  EXPECT_FALSE(c.recv(nullptr, 4, 1));
}

TEST(NcclCommunicator, EveryGpuOfTheNodeSumsItsRanksData) {
  TROUPE_REQUIRE_GPU();
  int n = 0;
  ASSERT_EQ(cudaGetDeviceCount(&n), cudaSuccess);
  std::vector<int> devices(static_cast<size_t>(n));
  std::iota(devices.begin(), devices.end(), 0);
  auto group = nccl_communicator::create_local(devices);
  ASSERT_TRUE(group) << group.error().what();
  // Rank r contributes r + 1 in every element; each rank's call runs on its own thread, as shards do.
  std::vector<std::vector<float>> results(devices.size());
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      results[static_cast<size_t>(r)] = all_reduced(*(*group)[static_cast<size_t>(r)], std::vector<float>(1000, static_cast<float>(r + 1)));
    });
  for (auto& t : threads) t.join();
  const float want = static_cast<float>(n * (n + 1) / 2);
  for (int r = 0; r < n; ++r) EXPECT_EQ(results[static_cast<size_t>(r)], std::vector<float>(1000, want)) << "rank " << r;
}

}  // namespace
}  // namespace troupe
