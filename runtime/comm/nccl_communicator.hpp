#pragma once
// The communicator over NCCL, for tensor parallelism across GPUs: buffers in GPU memory, each rank on
// its own device and stream. A node's GPUs in one process form a group with create_local (one rank
// per device; a single GPU is a group of one); ranks in several processes join with a unique id that
// rank 0 makes and hands to the others out of band. Built only with CUDA and NCCL.

#include <nccl.h>

#include <memory>
#include <vector>

#include "runtime/comm/communicator.hpp"

namespace troupe {

class nccl_communicator final : public communicator {
 public:
  /// One communicator per device, rank i on devices[i] (ncclCommInitAll).
  static expected<std::vector<std::unique_ptr<nccl_communicator>>> create_local(const std::vector<int>& devices);
  /// A new group's id, made by rank 0 and sent to the other ranks.
  static expected<ncclUniqueId> make_id();
  /// Joins group `id` as `rank` of `world_size` on CUDA device `device`; blocks until every rank has.
  static expected<std::unique_ptr<nccl_communicator>> join(const ncclUniqueId& id, int rank, int world_size, int device);

  ~nccl_communicator() override;
  nccl_communicator(const nccl_communicator&) = delete;
  nccl_communicator& operator=(const nccl_communicator&) = delete;

  int rank() const noexcept override { return rank_; }
  int world_size() const noexcept override { return world_size_; }
  buffer_space buffers() const noexcept override { return buffer_space::device; }
  int device() const noexcept { return device_; }

  status all_reduce_sum(float* data, size_t n) override;
  status send(const float* data, size_t n, int peer) override;
  status recv(float* data, size_t n, int peer) override;

 private:
  nccl_communicator() = default;
  /// Makes the device current and the stream; the communicator itself is set by the caller.
  status init_device(int device);
  status check_peer(int peer) const;
  /// Waits for the operation just queued on the stream.
  status finish(ncclResult_t r, const char* what);

  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int rank_ = 0, world_size_ = 1, device_ = 0;
};

}  // namespace troupe
