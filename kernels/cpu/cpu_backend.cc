// kernels/cpu/cpu_backend.cc — memory, initialisation and the row-wise ops of the CPU
// backend, gemm through OpenBLAS, and RoPE with the KV cache store.
#include "kernels/cpu/cpu_backend.h"

#include <cblas.h>
#include <sched.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "kernels/cpu/check_shape.h"
#include "kernels/cpu/vec.h"

namespace prefixd {
namespace {

constexpr size_t kAlignment = 64;  // a cache line, and the widest SIMD register

// About this many elements of a row-wise op per ParallelFor range: enough work (tens of
// microseconds) to be worth waking a thread for.
constexpr int64_t kElementsPerRange = int64_t{1} << 16;

int64_t RowGrain(int64_t row_elements) {
  return std::max<int64_t>(1, kElementsPerRange / std::max<int64_t>(row_elements, 1));
}

float Bf16ToF32(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

// IEEE binary16 -> binary32, exact for every input: subnormals become normal floats,
// infinities stay infinite and NaNs keep their sign and payload.
float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1f;
  const uint32_t mantissa = h & 0x3ff;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in fp32.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign != 0 ? -magnitude : magnitude;
  }
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent - 15 + 127) << 23) | (mantissa << 13));
}

// OpenBLAS runs single-threaded: gemms are split over the backend's own pool, whose idle
// threads sleep. OpenBLAS's own threads spin (sched_yield) while they wait, and on a
// machine whose cores are busy with other work that made decode steps up to 100 times
// slower. (Process-wide; set on every backend's construction.)
void UseOneOpenBlasThread() {
  if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

}  // namespace

CpuBackend::CpuBackend(int num_threads) : pool_(num_threads) { UseOneOpenBlasThread(); }

std::string CpuBackend::Describe() const {
  // e.g. "cpu (16 threads, OpenBLAS 0.3.21 for Zen)"
  return absl::StrCat("cpu (", pool_.num_threads(), " threads, ",
                      absl::StripAsciiWhitespace(OPENBLAS_VERSION), " for ",
                      openblas_get_corename(), ")");
}

namespace {

// The cores this process may run on (its affinity mask, e.g. under taskset or a container's
// cpuset), which can be fewer than the machine has.
int UsableCores() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace

std::unique_ptr<Backend> MakeCpuBackend(int num_threads) {
  PREFIXD_CHECK(num_threads >= 0, "MakeCpuBackend: num_threads must be >= 0, got ", num_threads);
  return std::make_unique<CpuBackend>(num_threads == 0 ? UsableCores() : num_threads);
}

// ---- Memory ----

DeviceTensor CpuBackend::Allocate(DType dtype, std::initializer_list<int64_t> dims) {
  Tensor view(nullptr, dtype, dims);
  // Never zero bytes, so even an empty tensor owns a distinct non-null allocation.
  const size_t bytes =
      std::max(kAlignment, (view.nbytes() + kAlignment - 1) / kAlignment * kAlignment);
  view.data = std::aligned_alloc(kAlignment, bytes);
  PREFIXD_CHECK(view.data != nullptr, "out of host memory allocating ", view.ShapeString());
  return DeviceTensor(this, view);
}

void CpuBackend::Free(void* data) { std::free(data); }

void* CpuBackend::AllocateHost(size_t bytes) {
  return std::aligned_alloc(
      kAlignment, std::max(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment));
}

void CpuBackend::FreeHost(void* data) { std::free(data); }

void CpuBackend::CopyAsync(absl::Span<const MemCopy> copies, CopyDirection direction) {
  (void)direction;  // one memory: both directions are a memcpy
  ParallelFor(static_cast<int64_t>(copies.size()), 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      std::memcpy(copies[i].dst, copies[i].src, copies[i].bytes);
  });
}

void CpuBackend::CopyFromHost(const void* src, Tensor& dst) {
  if (dst.nbytes() > 0) std::memcpy(dst.data, src, dst.nbytes());
}

void CpuBackend::CopyToHost(const Tensor& src, void* dst) {
  if (src.nbytes() > 0) std::memcpy(dst, src.data, src.nbytes());
}

void CpuBackend::ConvertFromHost(const void* src, DType src_dtype, Tensor& dst) {
  PREFIXD_CHECK(dst.dtype == DType::kF32, "ConvertFromHost: dst is ", dst.ShapeString(),
                ", expected the compute dtype f32");
  float* out = dst.as<float>();
  switch (src_dtype) {
    case DType::kF32:
      CopyFromHost(src, dst);
      return;
    case DType::kBF16: {
      const auto* in = static_cast<const uint16_t*>(src);
      ParallelFor(dst.numel(), kElementsPerRange * 4, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) out[i] = Bf16ToF32(in[i]);
      });
      return;
    }
    case DType::kF16: {
      const auto* in = static_cast<const uint16_t*>(src);
      ParallelFor(dst.numel(), kElementsPerRange * 4, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) out[i] = F16ToF32(in[i]);
      });
      return;
    }
    case DType::kI32:
      break;
  }
  PREFIXD_CHECK(false, "ConvertFromHost: cannot convert ", DTypeName(src_dtype), " to f32");
}

// ---- Initialisation ----

void CpuBackend::FillRandom(Tensor& t, uint64_t seed, float scale) {
  PREFIXD_CHECK(t.dtype == DType::kF32, "FillRandom: ", t.ShapeString(), " is not f32");
  float* out = t.as<float>();
  ParallelFor(t.numel(), kElementsPerRange, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = RandomValue(seed, i, scale);
  });
}

void CpuBackend::Fill(Tensor& t, float value) {
  PREFIXD_CHECK(t.dtype == DType::kF32, "Fill: ", t.ShapeString(), " is not f32");
  float* out = t.as<float>();
  ParallelFor(t.numel(), kElementsPerRange * 4,
              [&](int64_t begin, int64_t end) { std::fill(out + begin, out + end, value); });
}

// ---- Row-wise ops ----

void CpuBackend::Embedding(const Tensor& table, const Tensor& ids, Tensor& out) {
  CheckShape("Embedding", "table", table, DType::kF32, {kAnySize, kAnySize});
  const int64_t vocab = table.dim(0), hidden = table.dim(1);
  CheckShape("Embedding", "ids", ids, DType::kI32, {kAnySize});
  const int64_t tokens = ids.dim(0);
  CheckShape("Embedding", "out", out, DType::kF32, {tokens, hidden});
  const int32_t* id = ids.as<int32_t>();
  for (int64_t t = 0; t < tokens; ++t) {
    PREFIXD_CHECK(0 <= id[t] && id[t] < vocab, "Embedding: ids[", t, "] = ", id[t],
                  " is outside the table ", table.ShapeString());
  }
  const float* src = table.as<float>();
  float* dst = out.as<float>();
  ParallelFor(tokens, RowGrain(hidden), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      std::memcpy(dst + t * hidden, src + id[t] * hidden, hidden * sizeof(float));
    }
  });
}

namespace {

// out = x / sqrt(mean(x^2) + eps) * weight for one row; out may alias x.
void RmsNormRow(const float* x, const float* weight, float eps, int64_t n, float* out) {
  const float inv_rms = 1.0f / std::sqrt(vec::SumOfSquares(x, n) / static_cast<float>(n) + eps);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * inv_rms * weight[i];
}

}  // namespace

void CpuBackend::RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  CheckShape("RmsNorm", "x", x, DType::kF32, {kAnySize, kAnySize});
  const int64_t rows = x.dim(0), hidden = x.dim(1);
  CheckShape("RmsNorm", "weight", weight, DType::kF32, {hidden});
  CheckShape("RmsNorm", "out", out, DType::kF32, {rows, hidden});
  const float* in = x.as<float>();
  const float* w = weight.as<float>();
  float* dst = out.as<float>();
  ParallelFor(rows, RowGrain(hidden), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      RmsNormRow(in + r * hidden, w, eps, hidden, dst + r * hidden);
    }
  });
}

void CpuBackend::AddRmsNorm(Tensor& residual, const Tensor& x, const Tensor& weight, float eps,
                            Tensor& out) {
  CheckShape("AddRmsNorm", "residual", residual, DType::kF32, {kAnySize, kAnySize});
  const int64_t rows = residual.dim(0), hidden = residual.dim(1);
  CheckShape("AddRmsNorm", "x", x, DType::kF32, {rows, hidden});
  CheckShape("AddRmsNorm", "weight", weight, DType::kF32, {hidden});
  CheckShape("AddRmsNorm", "out", out, DType::kF32, {rows, hidden});
  float* res = residual.as<float>();
  const float* in = x.as<float>();
  const float* w = weight.as<float>();
  float* dst = out.as<float>();
  // Row by row, the residual row is complete before out's row is written, so out may
  // alias x.
  ParallelFor(rows, RowGrain(hidden), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* res_row = res + r * hidden;
      vec::Axpy(1.0f, in + r * hidden, res_row, hidden);
      RmsNormRow(res_row, w, eps, hidden, dst + r * hidden);
    }
  });
}

void CpuBackend::SiluMul(const Tensor& gate_up, Tensor& out) {
  CheckShape("SiluMul", "gate_up", gate_up, DType::kF32, {kAnySize, kAnySize});
  const int64_t rows = gate_up.dim(0), inter = gate_up.dim(1) / 2;
  PREFIXD_CHECK(gate_up.dim(1) % 2 == 0, "SiluMul: gate_up ", gate_up.ShapeString(),
                " has an odd number of columns");
  CheckShape("SiluMul", "out", out, DType::kF32, {rows, inter});
  const float* in = gate_up.as<float>();
  float* dst = out.as<float>();
  ParallelFor(rows, RowGrain(2 * inter), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* gate = in + r * 2 * inter;
      const float* up = gate + inter;
      float* o = dst + r * inter;
      // silu(g) = g * sigmoid(g); for g -> -inf, exp(-g) = inf gives -0, not NaN.
      for (int64_t i = 0; i < inter; ++i) o[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
    }
  });
}

void CpuBackend::GatherRows(const Tensor& x, const Tensor& rows, Tensor& out) {
  CheckShape("GatherRows", "x", x, DType::kF32, {kAnySize, kAnySize});
  const int64_t num_rows = x.dim(0), width = x.dim(1);
  CheckShape("GatherRows", "rows", rows, DType::kI32, {kAnySize});
  const int64_t gathered = rows.dim(0);
  CheckShape("GatherRows", "out", out, DType::kF32, {gathered, width});
  const int32_t* row = rows.as<int32_t>();
  const float* src = x.as<float>();
  float* dst = out.as<float>();
  for (int64_t b = 0; b < gathered; ++b) {
    PREFIXD_CHECK(0 <= row[b] && row[b] < num_rows, "GatherRows: rows[", b, "] = ", row[b],
                  " is outside x ", x.ShapeString());
    std::memcpy(dst + b * width, src + row[b] * width, width * sizeof(float));
  }
}

// ---- Gemm ----

// Decode steps have a handful of rows. OpenBLAS 0.3.21's sgemm packs all of w even for one
// row; sgemv per row streams w straight through, measured 5.7x faster for 1 row and 1.9x
// for 2 (4096 x 4096), about even at 4.
constexpr int64_t kMaxGemvRows = 3;
// Output columns per slice of a gemm on the pool (x4 when x has more than 64 rows).
constexpr int64_t kGemmSliceColumns = 256;
// Multiply-adds below which a gemm is not split at all.
constexpr int64_t kMinSplitGemmWork = int64_t{1} << 22;

void CpuBackend::Gemm(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) {
  CheckShape("Gemm", "x", x, DType::kF32, {kAnySize, kAnySize});
  const int64_t m = x.dim(0), k = x.dim(1);
  CheckShape("Gemm", "w", w, DType::kF32, {kAnySize, k});
  const int64_t n = w.dim(0);
  CheckShape("Gemm", "out", out, DType::kF32, {m, n});
  if (bias != nullptr) CheckShape("Gemm", "bias", *bias, DType::kF32, {n});
  PREFIXD_CHECK(std::max({m, n, k}) <= std::numeric_limits<int>::max(),
                "Gemm: sizes over the BLAS int range, x ", x.ShapeString(), " w ", w.ShapeString());
  if (m == 0 || n == 0) return;
  float* dst = out.as<float>();
  if (k == 0) {
    std::fill_n(dst, m * n, 0.0f);
  } else {
    // Column slices of out, each a single-threaded BLAS call on the pool (see
    // UseOneOpenBlasThread). The slice width depends on the shape only, so the result does
    // not depend on the thread count.
    // A small gemm runs whole on the calling thread: waking the pool costs more.
    const int64_t slice = m * n * k < kMinSplitGemmWork ? n
                          : m <= 64                     ? kGemmSliceColumns
                                                        : 4 * kGemmSliceColumns;
    const float* xs = x.as<float>();
    const float* ws = w.as<float>();
    ParallelFor(n, slice, [&](int64_t begin, int64_t end) {
      const int cols = static_cast<int>(end - begin);
      const float* w_slice = ws + begin * k;
      if (m <= kMaxGemvRows) {
        for (int64_t r = 0; r < m; ++r) {
          // out[r, begin:end] = w[begin:end, k] · x[r, :]
          cblas_sgemv(CblasRowMajor, CblasNoTrans, cols, static_cast<int>(k), 1.0f, w_slice,
                      static_cast<int>(k), xs + r * k, 1, 0.0f, dst + r * n + begin, 1);
        }
      } else {
        // Row-major out[m, begin:end] = x[m, k] · w[begin:end, k]ᵀ.
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), cols,
                    static_cast<int>(k), 1.0f, xs, static_cast<int>(k), w_slice,
                    static_cast<int>(k), 0.0f, dst + begin, static_cast<int>(n));
      }
    });
  }
  if (bias == nullptr) return;
  const float* b = bias->as<float>();
  ParallelFor(m, RowGrain(n), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) vec::Axpy(1.0f, b, dst + r * n, n);
  });
}

// ---- RoPE and KV store ----

void CpuBackend::RopeAndStoreKv(Tensor& qkv, const Tensor& positions, const Tensor& inv_freq,
                                const Tensor& slots, const AttentionShape& shape,
                                KvCacheLayer& kv) {
  const int64_t hq = shape.num_q_heads, hkv = shape.num_kv_heads, d = shape.head_dim;
  PREFIXD_CHECK(hq > 0 && hkv > 0 && d > 0 && d % 2 == 0 && hq % hkv == 0,
                "RopeAndStoreKv: bad attention shape Hq=", hq, " Hkv=", hkv, " d=", d);
  CheckShape("RopeAndStoreKv", "qkv", qkv, DType::kF32, {kAnySize, (hq + 2 * hkv) * d});
  const int64_t tokens = qkv.dim(0);
  CheckShape("RopeAndStoreKv", "positions", positions, DType::kI32, {tokens});
  CheckShape("RopeAndStoreKv", "inv_freq", inv_freq, DType::kF32, {d / 2});
  CheckShape("RopeAndStoreKv", "slots", slots, DType::kI32, {tokens});
  CheckShape("RopeAndStoreKv", "kv.k", kv.k, DType::kF32, {kAnySize, hkv, kAnySize, d});
  const int64_t num_blocks = kv.k.dim(0), block_size = kv.k.dim(2);
  CheckShape("RopeAndStoreKv", "kv.v", kv.v, DType::kF32, {num_blocks, hkv, block_size, d});
  const int32_t* pos = positions.as<int32_t>();
  const int32_t* slot = slots.as<int32_t>();
  for (int64_t t = 0; t < tokens; ++t) {
    PREFIXD_CHECK(pos[t] >= 0, "RopeAndStoreKv: positions[", t, "] = ", pos[t]);
    PREFIXD_CHECK(0 <= slot[t] && slot[t] < num_blocks * block_size, "RopeAndStoreKv: slots[", t,
                  "] = ", slot[t], " is outside the cache ", kv.k.ShapeString());
  }
  const int64_t half = d / 2;
  const int64_t row_width = (hq + 2 * hkv) * d;
  const float* freq = inv_freq.as<float>();
  float* rows = qkv.as<float>();
  float* k_cache = kv.k.as<float>();
  float* v_cache = kv.v.as<float>();
  ParallelFor(tokens, RowGrain(row_width), [&](int64_t begin, int64_t end) {
    std::vector<float> cos(half), sin(half);
    for (int64_t t = begin; t < end; ++t) {
      for (int64_t j = 0; j < half; ++j) {
        const float angle = static_cast<float>(pos[t]) * freq[j];
        cos[j] = std::cos(angle);
        sin[j] = std::sin(angle);
      }
      float* row = rows + t * row_width;
      // The q heads and k heads are adjacent: rotate all Hq + Hkv of them alike.
      for (int64_t h = 0; h < hq + hkv; ++h) {
        float* x = row + h * d;
#pragma omp simd
        for (int64_t j = 0; j < half; ++j) {
          const float x0 = x[j], x1 = x[j + half];
          x[j] = x0 * cos[j] - x1 * sin[j];
          x[j + half] = x1 * cos[j] + x0 * sin[j];
        }
      }
      // Cache layout [num_blocks, Hkv, block_size, d].
      const int64_t block = slot[t] / block_size, offset = slot[t] % block_size;
      const float* k = row + hq * d;
      const float* v = k + hkv * d;
      for (int64_t h = 0; h < hkv; ++h) {
        const int64_t at = ((block * hkv + h) * block_size + offset) * d;
        std::memcpy(k_cache + at, k + h * d, d * sizeof(float));
        std::memcpy(v_cache + at, v + h * d, d * sizeof(float));
      }
    }
  });
}

}  // namespace prefixd
