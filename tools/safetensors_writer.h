// tools/safetensors_writer.h — writes a .safetensors file (the layout engine/safetensors.h
// reads), for the make-test-model tool and for tests.
#ifndef PREFIXD_TOOLS_SAFETENSORS_WRITER_H_
#define PREFIXD_TOOLS_SAFETENSORS_WRITER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "kernels/kernels.h"

namespace prefixd {

struct NamedTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // empty for a scalar
  std::string bytes;           // numel × dtype-size bytes, row-major, little-endian
};

// Writes `tensors` (names unique, bytes matching shape and dtype) and `metadata` to `path`.
// As the reference implementation does, the data section holds the tensors ordered by
// dtype size (largest first) then name, and the header is padded with spaces to a multiple
// of 8 bytes, so every tensor is aligned to its element size in the file. The file appears
// whole or not at all: it is written beside `path` and renamed over it.
absl::Status WriteSafetensors(const std::string& path, absl::Span<const NamedTensor> tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace prefixd

#endif  // PREFIXD_TOOLS_SAFETENSORS_WRITER_H_
