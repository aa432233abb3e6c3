// kernels/cuda/gather_rows.cu — out[b, :] = x[rows[b], :]: Embedding (x is the embedding
// table, rows the token ids) and GatherRows (the last hidden row of each sequence).
//
// Grid (num_gathered), 256 threads: one CTA copies one row in the widest word (16, 8, 4 or 2
// bytes) that divides the row width and both base addresses; any dtype, as raw bytes.
#include <cstdint>

#include "kernels/cuda/helpers.cuh"
#include "kernels/cuda/launch.h"

namespace prefixd::cuda {
namespace {

constexpr int kThreads = 256;

// x: [num_rows, row_words], rows: [gridDim.x], out: [gridDim.x, row_words] of Word.
template <typename Word>
__global__ void GatherRowsKernel(const Word* x, int64_t num_rows, int64_t row_words,
                                 const int32_t* rows, Word* out) {
  const int64_t b = blockIdx.x;
  const int32_t row = rows[b];
  PREFIXD_DEVICE_CHECK(0 <= row && row < num_rows,
                       "GatherRows/Embedding: rows[%lld] = %d is "
                       "outside [0, %lld)",
                       static_cast<long long>(b), row, static_cast<long long>(num_rows));
  const Word* src = x + row * row_words;
  Word* dst = out + b * row_words;
  for (int64_t i = threadIdx.x; i < row_words; i += blockDim.x) dst[i] = src[i];
}

template <typename Word>
cudaError_t Gather(const void* x, int64_t num_rows, int64_t row_bytes, const int32_t* rows,
                   int64_t num_gathered, void* out, cudaStream_t stream) {
  GatherRowsKernel<Word><<<static_cast<unsigned>(num_gathered), kThreads, 0, stream>>>(
      static_cast<const Word*>(x), num_rows, row_bytes / static_cast<int64_t>(sizeof(Word)), rows,
      static_cast<Word*>(out));
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchGatherRows(const void* x, int64_t num_rows, int64_t row_bytes,
                             const int32_t* rows, int64_t num_gathered, void* out,
                             cudaStream_t stream) {
  if (num_gathered == 0 || row_bytes == 0) return cudaSuccess;
  // The widest word that every row start of x and out is aligned to.
  auto fits = [&](int64_t word) {
    return row_bytes % word == 0 && IsAligned(x, word) && IsAligned(out, word);
  };
  if (fits(16)) return Gather<uint4>(x, num_rows, row_bytes, rows, num_gathered, out, stream);
  if (fits(8)) return Gather<uint2>(x, num_rows, row_bytes, rows, num_gathered, out, stream);
  if (fits(4)) return Gather<uint32_t>(x, num_rows, row_bytes, rows, num_gathered, out, stream);
  if (fits(2)) return Gather<uint16_t>(x, num_rows, row_bytes, rows, num_gathered, out, stream);
  return Gather<uint8_t>(x, num_rows, row_bytes, rows, num_gathered, out, stream);
}

}  // namespace prefixd::cuda
