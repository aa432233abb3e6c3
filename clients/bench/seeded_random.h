// clients/bench/seeded_random.h — the seeded random numbers prefix-bench's workloads are
// drawn from, identical on every machine and standard library.
#ifndef PREFIXD_CLIENTS_BENCH_SEEDED_RANDOM_H_
#define PREFIXD_CLIENTS_BENCH_SEEDED_RANDOM_H_

#include <cstdint>
#include <random>

namespace prefixd::bench {

inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// An independent stream per (seed, stream), so that e.g. changing the number of groups does
// not change the arrival times. std::mt19937_64 is fully specified by the standard; the
// std:: distributions are not, so the mappings below are written out.
inline std::mt19937_64 MakeRng(uint64_t seed, uint64_t stream) {
  return std::mt19937_64(SplitMix64(seed ^ SplitMix64(stream)));
}

// Uniform in [0, n), n > 0 (the modulo bias is below 2^-40 for any n we use).
inline uint64_t UniformBelow(std::mt19937_64& rng, uint64_t n) { return rng() % n; }

// Uniform in [0, 1).
inline double UniformUnit(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

}  // namespace prefixd::bench

#endif  // PREFIXD_CLIENTS_BENCH_SEEDED_RANDOM_H_
