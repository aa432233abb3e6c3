// kernels/cuda/segmented_sort.cu — CUB's segmented radix sort of each sampling row's
// (logit, id) pairs by logit descending. A file of its own because CUB's templates are the
// slowest thing in kernels/cuda to compile.
//
// Radix sort is stable, and the ids go in ascending, so equal logits come out by id ascending:
// exactly kernels.h's "higher logit, then lower id" order.
#include <cub/device/device_segmented_radix_sort.cuh>

#include "kernels/cuda/launch.h"

namespace prefixd::cuda {

cudaError_t SortRowsDescending(void* temp, size_t* temp_bytes, const float* keys_in,
                               float* keys_out, const int32_t* ids_in, int32_t* ids_out,
                               int num_items, int rows, const int32_t* begin, const int32_t* end,
                               cudaStream_t stream) {
  return cub::DeviceSegmentedRadixSort::SortPairsDescending(
      temp, *temp_bytes, keys_in, keys_out, ids_in, ids_out, num_items, rows, begin, end,
      /*begin_bit=*/0, /*end_bit=*/static_cast<int>(sizeof(float) * 8), stream);
}

}  // namespace prefixd::cuda
