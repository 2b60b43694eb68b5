#pragma once
// A group of communicators between threads of one process, over host memory: the shards of a
// tensor/pipeline-parallel replica run in one process (tests, and a node that serves a whole replica
// on its CPU cores). send copies into a queue and returns; recv takes from the queue of its sender,
// in order; all_reduce_sum gathers every rank's buffer and each rank adds them up in rank order
// 0..n-1, so every rank ends with bit-identical sums.
//
// Nothing waits forever: a call that waits longer than the group's timeout fails with `unavailable`
// naming the missing peer, and the group is then broken: every pending and later call of any rank
// fails at once (after a timed-out collective the ranks no longer agree on what comes next). A rank
// whose communicator is destroyed breaks the group the same way. One thread at a time per rank.

#include <chrono>
#include <memory>
#include <vector>

#include "runtime/comm/communicator.hpp"

namespace troupe {

/// n communicators, rank i at index i, sharing one group; each call waits at most `timeout`.
std::vector<std::shared_ptr<communicator>> make_local_group(int n, std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace troupe
