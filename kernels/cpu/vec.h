// kernels/cpu/vec.h — the few fp32 vector loops the CPU ops are built from.
//
// `#pragma omp simd` (compiled with -fopenmp-simd: no OpenMP runtime) lets the compiler
// vectorise them; the reductions then sum in vector lanes, a fixed order for a given n.
#ifndef PREFIXD_KERNELS_CPU_VEC_H_
#define PREFIXD_KERNELS_CPU_VEC_H_

#include <cstdint>

// Marks a hot function to be compiled for baseline x86-64 and again for AVX2+FMA (x86-64-v3)
// and AVX-512 (x86-64-v4); the dynamic loader picks the best clone the CPU runs (an ifunc).
// The helpers below inline into each clone and vectorise at its width. A default build
// targets baseline x86-64 (SSE2), so without this the attention loops ran 2x slower.
#if defined(__x86_64__) && defined(__GNUC__) && defined(__ELF__)
#define PREFIXD_CPU_TARGET_CLONES \
  __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define PREFIXD_CPU_TARGET_CLONES
#endif

namespace prefixd::vec {

inline float Dot(const float* a, const float* b, int64_t n) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

inline float SumOfSquares(const float* x, int64_t n) { return Dot(x, x, n); }

// y += a * x
inline void Axpy(float a, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// x *= a
inline void Scale(float a, float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] *= a;
}

}  // namespace prefixd::vec

#endif  // PREFIXD_KERNELS_CPU_VEC_H_
