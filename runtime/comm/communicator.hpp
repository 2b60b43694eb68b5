#pragma once
// The data plane between the shards of one model: the tensor-parallel all-reduce and point-to-point
// transfers (pipeline activations). One interface, several transports: NCCL between GPUs
// (nccl_communicator), UCX between processes and hosts (ucx_communicator), threads of one process
// (local_communicator, for tests and in-process replicas). Tensors never ride on CAF messages.

#include <cstddef>

#include "runtime/core/error.hpp"

namespace troupe {

/// Where the buffers handed to a communicator must live.
enum class buffer_space {
  host,    ///< host memory (UCX over TCP or shared memory)
  device,  ///< GPU memory on the communicator's device (NCCL)
};

/// One rank's end of a group of world_size() ranks. Calls block until the data may be read or reused.
/// all_reduce_sum is collective: every rank makes the same calls in the same order.
class communicator {
 public:
  virtual ~communicator() = default;

  virtual int rank() const noexcept = 0;
  virtual int world_size() const noexcept = 0;
  virtual buffer_space buffers() const noexcept = 0;

  /// data[0, n) becomes the element-wise sum of every rank's data[0, n).
  virtual status all_reduce_sum(float* data, size_t n) = 0;
  /// Sends data[0, n) to rank `peer`, which receives it with recv(.., n, this rank).
  virtual status send(const float* data, size_t n, int peer) = 0;
  /// Receives n floats from rank `peer` into data.
  virtual status recv(float* data, size_t n, int peer) = 0;
};

}  // namespace troupe
