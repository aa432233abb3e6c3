#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace prefixd {
namespace {

using Json = nlohmann::json;

// The reference implementation refuses larger headers too; it bounds what a hostile file can
// make us parse.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr size_t kMaxIndexBytes = size_t{64} << 20;

constexpr char kIndexFile[] = "model.safetensors.index.json";
constexpr char kSingleFile[] = "model.safetensors";

// Every dtype of the safetensors format, so that a checkpoint in one we cannot load gets
// "not supported" rather than "unknown".
constexpr std::string_view kKnownDTypes[] = {
    "BOOL", "U8",  "I8",  "I16",     "U16",     "F16",     "BF16", "I32",     "U32",     "F32",
    "F64",  "I64", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4",   "F6_E2M3", "F6_E3M2", "C64"};

// This Abseil is built with its own absl::string_view, which StrCat takes and
// std::string_view does not convert to.
absl::string_view AsAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// A JSON value for an error message, cut short so a huge value cannot flood a log.
std::string Quote(const Json& value) {
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > 60) text = absl::StrCat(text.substr(0, 57), "...");
  return text;
}

struct Mapping {
  const std::byte* data = nullptr;  // nullptr for an empty file
  size_t size = 0;
};

// Maps a whole regular file read-only.
absl::StatusOr<Mapping> MapReadOnly(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
  absl::Cleanup close_fd = [fd] { ::close(fd); };
  struct stat st;
  if (::fstat(fd, &st) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot stat ", path));
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  Mapping m;
  m.size = static_cast<size_t>(st.st_size);
  if (m.size == 0) return m;
  void* p = ::mmap(nullptr, m.size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) return absl::ErrnoToStatus(errno, absl::StrCat("cannot map ", path));
  m.data = static_cast<const std::byte*>(p);
  return m;
}

void Unmap(const Mapping& m) {
  if (m.data != nullptr) ::munmap(const_cast<std::byte*>(m.data), m.size);
}

// Parses JSON text, reporting a key that appears twice in the top-level object (nlohmann
// would silently keep the last one, and two readers of the file could disagree).
absl::StatusOr<Json> ParseJson(const char* begin, const char* end, std::string_view path,
                               std::string_view what) {
  std::string duplicate;
  std::set<std::string> keys;
  auto on_event = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (depth == 1 && event == Json::parse_event_t::key && duplicate.empty() &&
        !keys.insert(parsed.get<std::string>()).second) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  Json root;
  try {
    root = Json::parse(begin, end, on_event);
  } catch (const Json::exception& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 5: ...".
    std::string_view message = e.what();
    if (size_t cut = message.find("] "); message.starts_with("[json.") && cut != message.npos) {
      message.remove_prefix(cut + 2);
    }
    return absl::InvalidArgumentError(
        absl::StrCat(AsAbsl(path), ": invalid JSON in the ", AsAbsl(what), ": ", AsAbsl(message)));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(AsAbsl(path), ": the ", AsAbsl(what),
                                                   " must be a JSON object, got ", Quote(root)));
  }
  if (!duplicate.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(AsAbsl(path), ": '", duplicate, "' appears twice in the ", AsAbsl(what)));
  }
  return root;
}

std::string JoinPath(const std::string& folder, std::string_view file) {
  return (std::filesystem::path(folder) / file).string();
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

// ---- dtypes and shapes ----

std::string_view SafetensorsDTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    case DType::kI32:
      return "I32";
  }
  return "?";
}

size_t SafetensorsDTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kBF16:
    case DType::kF16:
      return 2;
  }
  return 0;
}

std::optional<DType> ParseSafetensorsDType(std::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  return std::nullopt;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeToString(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// ---- SafetensorsFile ----

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  absl::StatusOr<Mapping> m = MapReadOnly(path);
  if (!m.ok()) return m.status();
  // Owns the mapping from here on, so every error below unmaps it.
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile(path, m->data, m->size));
  if (absl::Status s = file->ParseHeader(); !s.ok()) return s;
  return file;
}

SafetensorsFile::~SafetensorsFile() { Unmap(Mapping{base_, size_}); }

absl::Status SafetensorsFile::ParseHeader() {
  auto error = [this](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", parts...));
  };
  if (size_ < 8) {
    return error("file of ", size_, " bytes is too short for a safetensors file (at least 8)");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | std::to_integer<uint64_t>(base_[i]);
  if (header_len > size_ - 8) {
    return error("header of ", header_len, " bytes is larger than the file (", size_, " bytes)");
  }
  if (header_len > kMaxHeaderBytes) {
    return error("header of ", header_len, " bytes is over the limit of ", kMaxHeaderBytes);
  }
  const char* header = reinterpret_cast<const char*>(base_ + 8);
  absl::StatusOr<Json> root = ParseJson(header, header + header_len, path_, "header");
  if (!root.ok()) return root.status();

  const std::byte* data_section = base_ + 8 + header_len;
  const uint64_t data_size = size_ - 8 - header_len;
  for (const auto& [name, entry] : root->items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return error("__metadata__ must be an object, got ", Quote(entry));
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          return error("__metadata__ value of '", key, "' must be a string, got ", Quote(value));
        }
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object()) return error("entry '", name, "' is not an object: ", Quote(entry));

    const auto dtype_it = entry.find("dtype");
    if (dtype_it == entry.end() || !dtype_it->is_string()) {
      return error("tensor '", name, "' has no \"dtype\" string");
    }
    const std::string dtype_name = dtype_it->get<std::string>();
    std::optional<DType> dtype = ParseSafetensorsDType(dtype_name);
    if (!dtype.has_value()) {
      if (std::find(std::begin(kKnownDTypes), std::end(kKnownDTypes), dtype_name) ==
          std::end(kKnownDTypes)) {
        return error("unknown dtype '", dtype_name, "' of tensor '", name, "'");
      }
      return error("dtype '", dtype_name, "' of tensor '", name,
                   "' is not supported (F32, F16, BF16 are)");
    }

    const auto shape_it = entry.find("shape");
    if (shape_it == entry.end() || !shape_it->is_array()) {
      return error("tensor '", name, "' has no \"shape\" list");
    }
    TensorInfo info;
    info.name = name;
    info.dtype = *dtype;
    uint64_t nbytes = SafetensorsDTypeSize(*dtype);
    for (const Json& dim : *shape_it) {
      // is_number_unsigned: a non-negative integer (nlohmann parses those as unsigned).
      if (!dim.is_number_unsigned() ||
          dim.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return error("tensor '", name, "' has shape ", Quote(*shape_it),
                     ": dimensions must be non-negative integers");
      }
      info.shape.push_back(dim.get<int64_t>());
      if (__builtin_mul_overflow(nbytes, dim.get<uint64_t>(), &nbytes)) {
        return error("tensor '", name, "' of shape ", Quote(*shape_it),
                     " has too many elements to address");
      }
    }

    const auto offsets_it = entry.find("data_offsets");
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned() ||
        (*offsets_it)[0].get<uint64_t>() > (*offsets_it)[1].get<uint64_t>()) {
      return error("tensor '", name, "' has data_offsets ",
                   offsets_it == entry.end() ? "missing" : Quote(*offsets_it),
                   ": expected [begin, end], two integers with 0 <= begin <= end");
    }
    const uint64_t begin = (*offsets_it)[0].get<uint64_t>();
    const uint64_t end = (*offsets_it)[1].get<uint64_t>();
    if (end - begin != nbytes) {
      return error("tensor '", name, "' has data_offsets [", begin, ", ", end, "] spanning ",
                   end - begin, " bytes, but shape ", ShapeToString(info.shape), " of ", dtype_name,
                   " needs ", nbytes, " bytes");
    }
    if (end > data_size) {
      return error("truncated file: tensor '", name, "' ends at byte ", end,
                   " of the data section, which has ", data_size, " bytes");
    }
    info.data = data_section + begin;
    info.nbytes = static_cast<size_t>(nbytes);
    tensors_.push_back(std::move(info));
  }

  // Overlapping tensors would alias each other's weights: a corrupt or hostile file.
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& t : tensors_) {
    if (t.nbytes > 0) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->data < b->data; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo& prev = *by_offset[i - 1];
    const TensorInfo& next = *by_offset[i];
    if (next.data < prev.data + prev.nbytes) {
      const auto offset = [&](const std::byte* p) { return p - data_section; };
      return error("tensors '", prev.name, "' (bytes ", offset(prev.data), " to ",
                   offset(prev.data) + prev.nbytes, ") and '", next.name, "' (bytes ",
                   offset(next.data), " to ", offset(next.data) + next.nbytes,
                   ") overlap in the data section");
    }
  }
  std::sort(tensors_.begin(), tensors_.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  return absl::OkStatus();
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

// ---- ModelWeights ----

absl::StatusOr<ModelWeights> ModelWeights::OpenFolder(const std::string& folder) {
  struct stat st;
  if (::stat(folder.c_str(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("model folder ", folder));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("model folder ", folder, " is not a folder"));
  }
  ModelWeights weights;
  weights.folder_ = folder;

  const std::string index_path = JoinPath(folder, kIndexFile);
  if (!FileExists(index_path)) {
    const std::string single_path = JoinPath(folder, kSingleFile);
    if (!FileExists(single_path)) {
      return absl::NotFoundError(
          absl::StrCat("no ", kSingleFile, " or ", kIndexFile, " in ", folder));
    }
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(single_path);
    if (!file.ok()) return file.status();
    weights.looked_in_ = single_path;
    for (const TensorInfo& t : (*file)->tensors()) {
      weights.by_name_[t.name] = Entry{&t, file->get()};
    }
    weights.files_.push_back(*std::move(file));
    return weights;
  }

  weights.looked_in_ = index_path;
  absl::StatusOr<Mapping> m = MapReadOnly(index_path);
  if (!m.ok()) return m.status();
  absl::Cleanup unmap = [&] { Unmap(*m); };
  if (m->size > kMaxIndexBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": ", m->size, " bytes is too large for an index"));
  }
  const char* text = reinterpret_cast<const char*>(m->data);
  absl::StatusOr<Json> root = ParseJson(text, text + m->size, index_path, "index");
  if (!root.ok()) return root.status();
  const auto map_it = root->find("weight_map");
  if (map_it == root->end() || !map_it->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": missing the \"weight_map\" object"));
  }

  // Shard file -> the tensors the index puts in it.
  std::map<std::string, std::vector<std::string>> shards;
  for (const auto& [name, shard] : map_it->items()) {
    if (!shard.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map entry of '", name,
                                                     "' must be a file name, got ", Quote(shard)));
    }
    const std::string file = shard.get<std::string>();
    // Shards live beside the index; a path could reach any file on the machine.
    if (file.empty() || file == "." || file == ".." || file.find('/') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map entry of '", name,
                                                     "' is not a file name in the folder: '", file,
                                                     "'"));
    }
    shards[file].push_back(name);
  }

  for (const auto& [shard, names] : shards) {
    const std::string shard_path = JoinPath(folder, shard);
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(shard_path);
    if (!file.ok()) {
      return absl::Status(file.status().code(),
                          absl::StrCat(index_path, " maps ", names.size(), " tensors to ", shard,
                                       ": ", file.status().message()));
    }
    std::vector<std::string> missing;
    for (const std::string& name : names) {
      if (const TensorInfo* t = (*file)->Find(name)) {
        weights.by_name_[name] = Entry{t, file->get()};
      } else {
        missing.push_back(absl::StrCat("'", name, "'"));
      }
    }
    if (!missing.empty()) {
      const size_t num_missing = missing.size();
      if (num_missing > 5) {
        missing.resize(5);
        missing.push_back("...");
      }
      return absl::InvalidArgumentError(absl::StrCat(
          shard_path, " lacks ", num_missing, " of the ", names.size(), " tensors that ",
          kIndexFile, " maps to it: ", absl::StrJoin(missing, ", ")));
    }
    weights.files_.push_back(*std::move(file));
  }
  return weights;
}

const TensorInfo* ModelWeights::Find(std::string_view name) const {
  auto it = by_name_.find(AsAbsl(name));
  return it == by_name_.end() ? nullptr : it->second.tensor;
}

absl::StatusOr<const TensorInfo*> ModelWeights::Require(
    std::string_view name, absl::Span<const int64_t> expected_shape) const {
  auto it = by_name_.find(AsAbsl(name));
  if (it == by_name_.end()) {
    return absl::NotFoundError(
        absl::StrCat("missing tensor '", AsAbsl(name), "' (looked in ", looked_in_, ")"));
  }
  const TensorInfo* t = it->second.tensor;
  if (!std::equal(t->shape.begin(), t->shape.end(), expected_shape.begin(), expected_shape.end())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", t->name, "' in ", it->second.file->path(), " has shape ",
        ShapeToString(t->shape), " but config.json implies ", ShapeToString(expected_shape)));
  }
  return t;
}

std::vector<std::string> ModelWeights::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(by_name_.size());
  for (const auto& [name, entry] : by_name_) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

size_t ModelWeights::total_bytes() const {
  size_t total = 0;
  for (const auto& [name, entry] : by_name_) total += entry.tensor->nbytes;
  return total;
}

}  // namespace prefixd
