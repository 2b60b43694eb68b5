#pragma once
// Token choice on the GPU: greedy argmax, and temperature / top-k / top-p / min-p draws with the
// semantics of troupe::sampler (runtime/sampling/sampler.hpp) after its penalties: the same candidate
// order (higher logit first, ties to the lower id), the same kept set, and the same walk for a given
// uniform draw u, so both pick the same token up to the rounding of exp() and of the sums.

#include <cstdint>

#include "kernels/cuda/cuda_check.hpp"

namespace troupe::cuda {

/// One row's settings.
struct sample_settings {
  float temperature = 1.0f;  ///< below 1e-5: greedy
  int32_t top_k = 0;         ///< <= 0 or >= n_vocab: off
  float top_p = 1.0f;        ///< 1: off
  float min_p = 0.0f;        ///< 0: off
  double u = 0.0;            ///< the uniform draw in [0, 1) that picks the token
};

/// ids[r] = the index of row r's largest logit (ties to the lowest id; NaN counts as -inf), for the
/// n_rows rows of n_vocab logits. Device pointers.
dev_status argmax(const float* logits, int64_t n_rows, int64_t n_vocab, int32_t* ids, cudaStream_t stream);

/// ids[r] = a draw from row r with settings[r]. With top-k or top-p on, candidates are walked best
/// first; otherwise in id order (as the CPU sampler). Device pointers.
dev_status sample(const float* logits, int64_t n_rows, int64_t n_vocab, const sample_settings* settings, int32_t* ids,
                  cudaStream_t stream);

}  // namespace troupe::cuda
