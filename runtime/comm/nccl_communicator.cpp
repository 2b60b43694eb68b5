#include "runtime/comm/nccl_communicator.hpp"

#include <string>

#include "runtime/model/cuda_status.hpp"

namespace troupe {
namespace {

unexpected nccl_error(ncclResult_t r, const std::string& what, ncclComm_t comm = nullptr) {
  errc code = errc::internal;
  if (r == ncclInvalidArgument || r == ncclInvalidUsage) code = errc::invalid_argument;
  if (r == ncclRemoteError) code = errc::unavailable;  // a peer failed or went away
  std::string msg = what + ": " + ncclGetErrorString(r);
  if (comm) {
    const char* last = ncclGetLastError(comm);
    if (last && *last) msg += std::string(" (") + last + ")";
  }
  return make_error(code, std::move(msg));
}

}  // namespace

expected<std::vector<std::unique_ptr<nccl_communicator>>> nccl_communicator::create_local(const std::vector<int>& devices) {
  if (devices.empty()) return make_error(errc::invalid_argument, "nccl: a group needs at least one device");
  const int n = static_cast<int>(devices.size());
  std::vector<ncclComm_t> comms(devices.size());
  if (const ncclResult_t r = ncclCommInitAll(comms.data(), n, devices.data()); r != ncclSuccess)
    return nccl_error(r, "nccl: create a group of " + std::to_string(n) + " GPU" + (n == 1 ? "" : "s"));
  // Owned first, so that every communicator is destroyed if a later step fails.
  std::vector<std::unique_ptr<nccl_communicator>> out;
  for (int i = 0; i < n; ++i) {
    std::unique_ptr<nccl_communicator> c(new nccl_communicator());
    c->comm_ = comms[static_cast<size_t>(i)];
    c->rank_ = i;
    c->world_size_ = n;
    c->device_ = devices[static_cast<size_t>(i)];
    out.push_back(std::move(c));
  }
  for (auto& c : out) TROUPE_TRY(c->init_device(c->device_));
  return out;
}

expected<ncclUniqueId> nccl_communicator::make_id() {
  ncclUniqueId id;
  if (const ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess) return nccl_error(r, "nccl: make a group id");
  return id;
}

expected<std::unique_ptr<nccl_communicator>> nccl_communicator::join(const ncclUniqueId& id, int rank, int world_size,
                                                                    int device) {
  if (world_size <= 0 || rank < 0 || rank >= world_size)
    return make_error(errc::invalid_argument, "nccl: rank " + std::to_string(rank) + " is outside a group of " +
                                                  std::to_string(world_size));
  std::unique_ptr<nccl_communicator> c(new nccl_communicator());
  c->rank_ = rank;
  c->world_size_ = world_size;
  TROUPE_TRY(c->init_device(device));
  if (const ncclResult_t r = ncclCommInitRank(&c->comm_, world_size, id, rank); r != ncclSuccess)
    return nccl_error(r, "nccl: join as rank " + std::to_string(rank) + " of " + std::to_string(world_size));
  return c;
}

nccl_communicator::~nccl_communicator() {
  cudaSetDevice(device_);
  if (stream_) cudaStreamSynchronize(stream_);
  if (comm_) ncclCommDestroy(comm_);
  if (stream_) cudaStreamDestroy(stream_);
}

status nccl_communicator::init_device(int device) {
  device_ = device;
  const std::string where = "nccl: cuda:" + std::to_string(device);
  TROUPE_TRY(cuda_status(cudaSetDevice(device), where));
  return cuda_status(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), where + ": create a stream");
}

status nccl_communicator::check_peer(int peer) const {
  if (peer < 0 || peer >= world_size_ || peer == rank_)
    return make_error(errc::invalid_argument, "nccl: rank " + std::to_string(rank_) + " cannot exchange with rank " +
                                                  std::to_string(peer) + " of " + std::to_string(world_size_));
  return {};
}

status nccl_communicator::finish(ncclResult_t r, const char* what) {
  const std::string where = "nccl: rank " + std::to_string(rank_) + ": " + what;
  if (r != ncclSuccess) return nccl_error(r, where, comm_);
  return cuda_status(cudaStreamSynchronize(stream_), where);
}

status nccl_communicator::all_reduce_sum(float* data, size_t n) {
  if (n == 0) return {};
  TROUPE_TRY(cuda_status(cudaSetDevice(device_), "nccl: select the device"));
  return finish(ncclAllReduce(data, data, n, ncclFloat, ncclSum, comm_, stream_), "all-reduce");
}

status nccl_communicator::send(const float* data, size_t n, int peer) {
  TROUPE_TRY(check_peer(peer));
  if (n == 0) return {};
  TROUPE_TRY(cuda_status(cudaSetDevice(device_), "nccl: select the device"));
  return finish(ncclSend(data, n, ncclFloat, peer, comm_, stream_), "send");
}

status nccl_communicator::recv(float* data, size_t n, int peer) {
  TROUPE_TRY(check_peer(peer));
  if (n == 0) return {};
  TROUPE_TRY(cuda_status(cudaSetDevice(device_), "nccl: select the device"));
  return finish(ncclRecv(data, n, ncclFloat, peer, comm_, stream_), "recv");
}

}  // namespace troupe
