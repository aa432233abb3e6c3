// engine/safetensors.h — memory-mapped safetensors files and the model folders made of them.
//
// File layout (https://github.com/huggingface/safetensors):
//   [8 bytes]  N, the header length, little-endian uint64
//   [N bytes]  JSON: {"<tensor name>": {"dtype": "BF16", "shape": [rows, cols],
//                                       "data_offsets": [begin, end]}, ...,
//                     "__metadata__": {"<key>": "<value>", ...} (optional)}
//   [rest]     the data section; a tensor's bytes are [begin, end) of it, row-major,
//              little-endian.
// Open() validates all of it, so every TensorInfo it hands out lies inside the mapping and
// has exactly numel × dtype-size bytes.
#ifndef PREFIXD_ENGINE_SAFETENSORS_H_
#define PREFIXD_ENGINE_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/kernels.h"

namespace prefixd {

// The safetensors name of a dtype ("F32", "BF16", "F16", "I32") and its size in bytes.
std::string_view SafetensorsDTypeName(DType dtype);
size_t SafetensorsDTypeSize(DType dtype);
// F32, F16 and BF16: the dtypes weights may be stored in (I32 is written, never loaded).
std::optional<DType> ParseSafetensorsDType(std::string_view name);

// One tensor of a mapped file. `data` points into the mapping, which must outlive this;
// it may be unaligned, so read it with memcpy (or a converting copy to the device).
struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // empty for a scalar
  const std::byte* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const;
};

// "[4096, 128]"
std::string ShapeToString(absl::Span<const int64_t> shape);

// A read-only mapping of one .safetensors file. Immovable: TensorInfos point into it.
// Immutable once open, so any number of threads may read it. The file must not be
// truncated while it is open (reads past its new end would fault).
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Sorted by name.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* Find(std::string_view name) const;
  // The header's "__metadata__" (absent: empty).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  size_t file_size() const { return size_; }

 private:
  SafetensorsFile(std::string path, const std::byte* base, size_t size)
      : path_(std::move(path)), base_(base), size_(size) {}
  absl::Status ParseHeader();

  std::string path_;
  const std::byte* base_;  // the whole file, mapped read-only
  size_t size_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// The weights of a Hugging Face model folder: `model.safetensors`, or the shards that
// `model.safetensors.index.json` maps tensor names to. Move-only; TensorInfo pointers stay
// valid for the life of the object (moves included).
class ModelWeights {
 public:
  // Opens the folder's weights. With an index, each referenced shard is opened once and
  // every tensor of the weight_map must be in its shard; tensors of a shard that the
  // weight_map does not list are ignored, as transformers does.
  static absl::StatusOr<ModelWeights> OpenFolder(const std::string& folder);

  ModelWeights(ModelWeights&&) = default;
  ModelWeights& operator=(ModelWeights&&) = default;

  // nullptr when the checkpoint has no tensor of that name.
  const TensorInfo* Find(std::string_view name) const;
  // The tensor, which must exist and have exactly `expected_shape`; errors name the tensor,
  // the file(s) looked in and both shapes.
  absl::StatusOr<const TensorInfo*> Require(std::string_view name,
                                            absl::Span<const int64_t> expected_shape) const;
  // Every tensor name, sorted.
  std::vector<std::string> TensorNames() const;
  // The opened files, in the order of their names.
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  // Bytes of all tensors (what loading will copy).
  size_t total_bytes() const;

 private:
  ModelWeights() = default;

  struct Entry {
    const TensorInfo* tensor;     // lives in *file
    const SafetensorsFile* file;  // one of files_
  };

  std::string folder_;
  std::string looked_in_;  // the index, or the single file: where names are looked up
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  absl::flat_hash_map<std::string, Entry> by_name_;
};

}  // namespace prefixd

#endif  // PREFIXD_ENGINE_SAFETENSORS_H_
