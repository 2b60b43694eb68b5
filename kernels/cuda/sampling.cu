// One block per row. The kept set and the drawn token are found without sorting the vocabulary: each
// is a threshold on a 64-bit key (the logit's order-preserving bits, then the inverted id, so a larger
// key is a better candidate and keys are unique), found by bisection with one pass over the row per
// step. Simple and exact; a row costs about 64 passes per threshold.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/sampling.cuh"

namespace troupe::cuda {
namespace {

constexpr int threads = 256;
constexpr int warps = threads / detail::warp_size;
constexpr float greedy_below = 1e-5f;  // as the CPU sampler (vLLM's _SAMPLING_EPS)

__device__ __forceinline__ float sanitized(float l) {
  if (l != l) return -INFINITY;  // NaN: never chosen
  return l == 0.0f ? 0.0f : l;   // -0 ties with +0
}

__device__ __forceinline__ uint64_t key_of(float l, int64_t id) {
  const uint32_t b = __float_as_uint(sanitized(l));
  const uint32_t ordered = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return (static_cast<uint64_t>(ordered) << 32) | (0xffffffffu - static_cast<uint32_t>(id));
}

__device__ __forceinline__ int32_t id_of(uint64_t key) {
  return static_cast<int32_t>(0xffffffffu - static_cast<uint32_t>(key & 0xffffffffu));
}

// Block-wide reductions in a fixed order (the same inputs always give the same sum). `sh` is the
// caller's shared scratch of `warps` entries; the leading barrier lets it be reused back to back.
template <class T, class Op>
__device__ T block_reduce(T v, Op op, T* sh) {
  for (int o = detail::warp_size / 2; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(detail::full_mask, v, o));
  __syncthreads();
  if (threadIdx.x % detail::warp_size == 0) sh[threadIdx.x / detail::warp_size] = v;
  __syncthreads();
  T r = sh[0];
  for (int w = 1; w < warps; ++w) r = op(r, sh[w]);
  return r;
}

struct max_op {
  __device__ unsigned long long operator()(unsigned long long a, unsigned long long b) const { return a > b ? a : b; }
};
struct sum_op {
  __device__ double operator()(double a, double b) const { return a + b; }
  __device__ unsigned long long operator()(unsigned long long a, unsigned long long b) const { return a + b; }
};

__device__ unsigned long long best_key(const float* row, int64_t n, unsigned long long* sh) {
  unsigned long long best = 0;
  for (int64_t i = threadIdx.x; i < n; i += threads) {
    const unsigned long long k = key_of(row[i], i);
    best = k > best ? k : best;
  }
  return block_reduce(best, max_op{}, sh);
}

__global__ void argmax_kernel(const float* logits, int64_t n, int32_t* ids) {
  __shared__ unsigned long long sh[warps];
  const unsigned long long best = best_key(logits + blockIdx.x * n, n, sh);
  if (threadIdx.x == 0) ids[blockIdx.x] = id_of(best);
}

__global__ void sample_kernel(const float* logits, int64_t n, const sample_settings* settings, int32_t* ids) {
  __shared__ unsigned long long sh_u[warps];
  __shared__ double sh_d[warps];
  const float* row = logits + blockIdx.x * n;
  const sample_settings s = settings[blockIdx.x];
  const unsigned long long best = best_key(row, n, sh_u);
  const float mx = sanitized(row[id_of(best)]);
  auto choose = [&](unsigned long long key) {
    if (threadIdx.x == 0) ids[blockIdx.x] = id_of(key);
  };
  if (s.temperature < greedy_below || mx == -INFINITY) return choose(best);

  const float inv_t = 1.0f / s.temperature;
  // Unnormalised probability at temperature: 1 for the best token, so it is also p / p_max.
  auto weight = [&](int64_t i) { return expf((sanitized(row[i]) - mx) * inv_t); };
  // Sum of weight(i) (or the count) over the ids that pass `keep`.
  auto mass = [&](auto keep) {
    double m = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += threads)
      if (keep(i)) m += weight(i);
    return block_reduce(m, sum_op{}, sh_d);
  };
  auto count = [&](auto keep) {
    unsigned long long c = 0;
    for (int64_t i = threadIdx.x; i < n; i += threads) c += keep(i) ? 1 : 0;
    return block_reduce(c, sum_op{}, sh_u);
  };
  // Largest key tau in [lo, hi] with pred(tau), given pred(lo) (pred true below a point, false above).
  auto largest_key = [&](unsigned long long lo, unsigned long long hi, auto pred) {
    while (lo < hi) {
      const unsigned long long mid = lo + (hi - lo) / 2 + 1;
      if (pred(mid)) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };

  const bool top_k_on = s.top_k > 0 && s.top_k < n;
  const bool top_p_on = s.top_p < 1.0f;
  if (!top_k_on && !top_p_on) {
    // Walk in id order over the weights, those under min_p dropped.
    auto w_min_p = [&](int64_t i) {
      const float w = weight(i);
      return w >= s.min_p ? w : 0.0f;
    };
    auto prefix = [&](int64_t last) {
      double m = 0.0;
      for (int64_t i = threadIdx.x; i <= last; i += threads) m += w_min_p(i);
      return block_reduce(m, sum_op{}, sh_d);
    };
    const double target = s.u * prefix(n - 1);
    int64_t lo = 0, hi = n - 1;  // the first id whose prefix sum passes target
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (prefix(mid) > target) hi = mid;
      else lo = mid + 1;
    }
    if (!(prefix(lo) > target)) {
      // Rounding left target unreached: the last id with any weight, as the CPU walk.
      unsigned long long last = 0;
      for (int64_t i = threadIdx.x; i < n; i += threads)
        if (w_min_p(i) > 0.0f) last = max(last, static_cast<unsigned long long>(i));
      lo = static_cast<int64_t>(block_reduce(last, max_op{}, sh_u));
    }
    if (threadIdx.x == 0) ids[blockIdx.x] = static_cast<int32_t>(lo);
    return;
  }

  // Top-k: the k-th best key; everything at or above it is kept.
  unsigned long long kth = 0;
  if (top_k_on)
    kth = largest_key(0, best, [&](unsigned long long tau) {
      return count([&](int64_t i) { return key_of(row[i], i) >= tau; }) >= static_cast<unsigned long long>(s.top_k);
    });
  // Top-p: the smallest best-first prefix of the kept set whose mass reaches top_p of its total.
  unsigned long long cut = kth;
  if (top_p_on) {
    const double target = static_cast<double>(s.top_p) * mass([&](int64_t i) { return key_of(row[i], i) >= kth; });
    cut = largest_key(kth, best, [&](unsigned long long tau) {
      return mass([&](int64_t i) { return key_of(row[i], i) >= tau; }) >= target;
    });
  }
  // Min-p drops the kept tokens under min_p x p_max (never the best one, whose weight is 1).
  auto kept = [&](int64_t i) { return key_of(row[i], i) >= cut && weight(i) >= s.min_p; };
  // The draw: the first candidate, best first, at which the running mass passes u x the kept mass.
  const double target = s.u * mass(kept);
  auto passes = [&](unsigned long long tau) {
    return mass([&](int64_t i) { return kept(i) && key_of(row[i], i) >= tau; }) > target;
  };
  if (passes(cut)) return choose(largest_key(cut, best, passes));
  // Rounding left target unreached: the last kept candidate with any weight, as the CPU walk.
  unsigned long long worst = 0;  // the largest inverted key
  for (int64_t i = threadIdx.x; i < n; i += threads)
    if (kept(i) && weight(i) > 0.0f) worst = max(worst, ~static_cast<unsigned long long>(key_of(row[i], i)));
  choose(~block_reduce(worst, max_op{}, sh_u));
}

}  // namespace

dev_status argmax(const float* logits, int64_t n_rows, int64_t n_vocab, int32_t* ids, cudaStream_t stream) {
  if (n_rows <= 0) return {};
  if (n_vocab <= 0 || n_vocab > INT32_MAX) return invalid_argument();
  argmax_kernel<<<static_cast<unsigned>(n_rows), threads, 0, stream>>>(logits, n_vocab, ids);
  return last_launch();
}

dev_status sample(const float* logits, int64_t n_rows, int64_t n_vocab, const sample_settings* settings, int32_t* ids,
                  cudaStream_t stream) {
  if (n_rows <= 0) return {};
  if (n_vocab <= 0 || n_vocab > INT32_MAX) return invalid_argument();
  sample_kernel<<<static_cast<unsigned>(n_rows), threads, 0, stream>>>(logits, n_vocab, settings, ids);
  return last_launch();
}

}  // namespace troupe::cuda
