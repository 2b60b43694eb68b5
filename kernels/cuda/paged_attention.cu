#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/paged_attention.cuh"

namespace troupe::cuda {
namespace {

constexpr int threads = 128;
constexpr int warps = threads / detail::warp_size;
constexpr int per_lane = attention_max_head_dim / detail::warp_size;  // head dims each lane holds
// The sequence is split only while the grid (tokens x heads x splits) stays under this many blocks
// (a few waves on the largest GPUs), and never into splits shorter than min_split_len positions.
constexpr int64_t target_blocks = 512;
constexpr int64_t min_split_len = 128;

struct split_plan {
  int n_splits = 1;
  int split_len = 0;
};

split_plan plan_splits(int64_t n_tokens, int n_heads, int32_t max_ctx) {
  const int64_t want = (max_ctx + min_split_len - 1) / min_split_len;
  const int64_t room = target_blocks / std::max<int64_t>(1, n_tokens * n_heads);
  const int64_t n = std::max<int64_t>(1, std::min(want, room));
  return {static_cast<int>(n), static_cast<int>((max_ctx + n - 1) / n)};
}

// exp(m - mx), with an empty split or warp (m = -inf) weighing nothing even when mx is -inf too.
__device__ __forceinline__ float weight_of(float m, float mx) { return m == -INFINITY ? 0.0f : expf(m - mx); }

// One block per (token, query head, split); its warps take the split's positions in turn, each with
// an online softmax (running max m, sum l, and the weighted sum of V rows in acc, lane-distributed
// over the head's dimensions). The warps then merge; a single split writes the output, several write
// (unnormalised sum, max, sum) for merge_splits.
__global__ void attention_kernel(const float* kc, const float* vc, int block_size, int n_kv_heads, int head_dim,
                                 token_pages tokens, const float* q, float* out, int n_heads, float scale,
                                 int split_len, int n_splits, float* partial) {
  __shared__ float sm_m[warps], sm_l[warps];
  __shared__ float sm_acc[warps][attention_max_head_dim];
  const int64_t t = blockIdx.x;
  const int h = static_cast<int>(blockIdx.y);
  const int split = static_cast<int>(blockIdx.z);
  const int lane = static_cast<int>(threadIdx.x) % detail::warp_size;
  const int w = static_cast<int>(threadIdx.x) / detail::warp_size;
  const int kv_head = h / (n_heads / n_kv_heads);
  const int64_t width = static_cast<int64_t>(n_kv_heads) * head_dim;
  const int32_t n_ctx = tokens.pos[t] + 1;
  const int32_t begin = split * split_len;
  const int32_t end = min(n_ctx, begin + split_len);
  const int32_t* table = tokens.block_tables + tokens.table_offset[t];
  const float* qh = q + (t * n_heads + h) * head_dim;

  float qd[per_lane], acc[per_lane];
  for (int i = 0; i < per_lane; ++i) {
    const int d = lane + i * detail::warp_size;
    qd[i] = d < head_dim ? qh[d] : 0.0f;
    acc[i] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int32_t p = begin + w; p < end; p += warps) {
    const int64_t slot = static_cast<int64_t>(table[p / block_size]) * block_size + p % block_size;
    const float* kr = kc + slot * width + static_cast<int64_t>(kv_head) * head_dim;
    const float* vr = vc + slot * width + static_cast<int64_t>(kv_head) * head_dim;
    float dot = 0.0f;
    for (int i = 0; i < per_lane; ++i) {
      const int d = lane + i * detail::warp_size;
      if (d < head_dim) dot += qd[i] * kr[d];
    }
    const float s = detail::warp_sum(dot) * scale;
    const float m_new = fmaxf(m, s);
    const float corr = weight_of(m, m_new);
    const float pw = expf(s - m_new);
    l = l * corr + pw;
    for (int i = 0; i < per_lane; ++i) {
      const int d = lane + i * detail::warp_size;
      if (d < head_dim) acc[i] = acc[i] * corr + pw * vr[d];
    }
    m = m_new;
  }

  if (lane == 0) {
    sm_m[w] = m;
    sm_l[w] = l;
  }
  for (int i = 0; i < per_lane; ++i) {
    const int d = lane + i * detail::warp_size;
    if (d < head_dim) sm_acc[w][d] = acc[i];
  }
  __syncthreads();
  float mx = -INFINITY;
  for (int v = 0; v < warps; ++v) mx = fmaxf(mx, sm_m[v]);
  float f[warps], sum = 0.0f;
  for (int v = 0; v < warps; ++v) {
    f[v] = weight_of(sm_m[v], mx);
    sum += sm_l[v] * f[v];
  }
  const int64_t row = t * n_heads + h;
  if (n_splits == 1) {
    for (int d = static_cast<int>(threadIdx.x); d < head_dim; d += threads) {
      float o = 0.0f;
      for (int v = 0; v < warps; ++v) o += sm_acc[v][d] * f[v];
      out[row * head_dim + d] = sum > 0.0f ? o / sum : 0.0f;
    }
    return;
  }
  float* part = partial + (row * n_splits + split) * (head_dim + 2);
  for (int d = static_cast<int>(threadIdx.x); d < head_dim; d += threads) {
    float o = 0.0f;
    for (int v = 0; v < warps; ++v) o += sm_acc[v][d] * f[v];
    part[d] = o;
  }
  if (threadIdx.x == 0) {
    part[head_dim] = mx;
    part[head_dim + 1] = sum;
  }
}

// One block per (token, query head): rescales every split's sum to the common max and normalises.
__global__ void merge_splits(const float* partial, int n_splits, int head_dim, float* out) {
  const int64_t row = blockIdx.x;
  const float* base = partial + row * n_splits * (head_dim + 2);
  float mx = -INFINITY;
  for (int s = 0; s < n_splits; ++s) mx = fmaxf(mx, base[s * (head_dim + 2) + head_dim]);
  float sum = 0.0f;
  for (int s = 0; s < n_splits; ++s)
    sum += base[s * (head_dim + 2) + head_dim + 1] * weight_of(base[s * (head_dim + 2) + head_dim], mx);
  for (int d = static_cast<int>(threadIdx.x); d < head_dim; d += blockDim.x) {
    float o = 0.0f;
    for (int s = 0; s < n_splits; ++s) o += base[s * (head_dim + 2) + d] * weight_of(base[s * (head_dim + 2) + head_dim], mx);
    out[row * head_dim + d] = sum > 0.0f ? o / sum : 0.0f;
  }
}

}  // namespace

size_t paged_attention_workspace_bytes(int head_dim) {
  // Splits are used only while tokens x heads x splits <= target_blocks, one partial row each.
  return static_cast<size_t>(target_blocks) * static_cast<size_t>(head_dim + 2) * sizeof(float);
}

dev_status paged_attention(const cpu::kv_layer_view& kv, const token_pages& tokens, const float* q, float* out,
                           int n_heads, float scale, int32_t max_ctx, void* workspace, size_t workspace_bytes,
                           cudaStream_t stream) {
  if (tokens.n_tokens <= 0) return {};
  if (kv.block_size <= 0 || kv.n_kv_heads <= 0 || n_heads <= 0 || n_heads % kv.n_kv_heads != 0 ||
      kv.head_dim <= 0 || kv.head_dim > attention_max_head_dim || max_ctx <= 0 || n_heads > 65535)
    return invalid_argument();
  const split_plan plan = plan_splits(tokens.n_tokens, n_heads, max_ctx);
  const size_t need = plan.n_splits > 1 ? static_cast<size_t>(tokens.n_tokens * n_heads * plan.n_splits) *
                                              static_cast<size_t>(kv.head_dim + 2) * sizeof(float)
                                        : 0;
  if (need > workspace_bytes) return invalid_argument();
  auto* partial = static_cast<float*>(workspace);
  const dim3 grid(static_cast<unsigned>(tokens.n_tokens), static_cast<unsigned>(n_heads),
                  static_cast<unsigned>(plan.n_splits));
  attention_kernel<<<grid, threads, 0, stream>>>(kv.k, kv.v, kv.block_size, kv.n_kv_heads, kv.head_dim, tokens, q,
                                                 out, n_heads, scale, plan.split_len, plan.n_splits, partial);
  if (plan.n_splits > 1) {
    TROUPE_CUDA_TRY(cudaGetLastError());
    merge_splits<<<static_cast<unsigned>(tokens.n_tokens * n_heads), threads, 0, stream>>>(partial, plan.n_splits,
                                                                                          kv.head_dim, out);
  }
  return last_launch();
}

}  // namespace troupe::cuda
