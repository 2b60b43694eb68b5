#pragma once
// The sampler's random numbers come from fully specified generators (splitmix64 to expand a seed,
// xoshiro256** for the stream; both by Blackman and Vigna, public domain algorithms) so that a seed
// gives the same draws with every compiler, standard library and platform. The standard library's
// engines are specified too, but its distributions are not, so we also convert bits to [0, 1) here.

#include <cstdint>

namespace troupe {

/// splitmix64: one step of the seed expander; advances state and returns the next output.
inline uint64_t splitmix64_next(uint64_t& state) noexcept {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// xoshiro256**: a small, fast generator with 256 bits of state and a specified output sequence.
class xoshiro256ss {
 public:
  /// State from four splitmix64 outputs of seed (never all zero), as the authors recommend.
  explicit xoshiro256ss(uint64_t seed) noexcept {
    uint64_t sm = seed;
    for (auto& word : s_) word = splitmix64_next(sm);
  }
  /// State given directly (for tests against the reference implementation); must not be all zero.
  xoshiro256ss(uint64_t s0, uint64_t s1, uint64_t s2, uint64_t s3) noexcept : s_{s0, s1, s2, s3} {}

  /// Next 64 random bits.
  uint64_t next() noexcept {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  /// Uniform double in [0, 1): the top 53 bits scaled by 2^-53 (exact, no rounding up to 1).
  double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  static uint64_t rotl(uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace troupe
