#include "tools/safetensors_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <numeric>
#include <set>

#include "absl/strings/str_cat.h"
#include "engine/safetensors.h"
#include "nlohmann/json.hpp"

namespace prefixd {
namespace {

using Json = nlohmann::json;

absl::Status CheckTensor(const NamedTensor& t) {
  if (t.name.empty()) return absl::InvalidArgumentError("a tensor has an empty name");
  if (t.name == "__metadata__") {
    return absl::InvalidArgumentError("'__metadata__' is reserved and cannot name a tensor");
  }
  uint64_t nbytes = SafetensorsDTypeSize(t.dtype);
  for (int64_t d : t.shape) {
    if (d < 0 || __builtin_mul_overflow(nbytes, static_cast<uint64_t>(d), &nbytes)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", t.name, "' has an invalid shape ", ShapeToString(t.shape)));
    }
  }
  if (t.bytes.size() != nbytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", t.name, "' has ", t.bytes.size(), " bytes, but shape ", ShapeToString(t.shape),
        " of ", std::string(SafetensorsDTypeName(t.dtype)), " needs ", nbytes));
  }
  return absl::OkStatus();
}

// Writes all of `parts` to a new file at `path`.
absl::Status WriteFile(const std::string& path, std::initializer_list<std::string_view> parts) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) return absl::ErrnoToStatus(errno, absl::StrCat("cannot create ", path));
  bool ok = true;
  for (std::string_view part : parts) {
    ok = ok && std::fwrite(part.data(), 1, part.size(), file) == part.size();
  }
  int error = ok ? 0 : errno;
  if (std::fclose(file) != 0 && ok) {
    ok = false;
    error = errno;
  }
  if (!ok) return absl::ErrnoToStatus(error, absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteSafetensors(const std::string& path, absl::Span<const NamedTensor> tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::set<std::string_view> names;
  for (const NamedTensor& t : tensors) {
    if (absl::Status s = CheckTensor(t); !s.ok()) return s;
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "' is given twice"));
    }
  }

  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const size_t size_a = SafetensorsDTypeSize(tensors[a].dtype);
    const size_t size_b = SafetensorsDTypeSize(tensors[b].dtype);
    if (size_a != size_b) return size_a > size_b;
    return tensors[a].name < tensors[b].name;
  });

  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string data;
  for (size_t i : order) {
    const NamedTensor& t = tensors[i];
    header[t.name] = {{"dtype", SafetensorsDTypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor names and metadata must be valid UTF-8: ", e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  char length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<char>((uint64_t{text.size()} >> (8 * i)));

  const std::string temp_path = absl::StrCat(path, ".tmp");
  if (absl::Status s = WriteFile(temp_path, {std::string_view(length, 8), text, data}); !s.ok()) {
    std::remove(temp_path.c_str());
    return s;
  }
  if (std::rename(temp_path.c_str(), path.c_str()) != 0) {
    absl::Status s =
        absl::ErrnoToStatus(errno, absl::StrCat("cannot rename ", temp_path, " to ", path));
    std::remove(temp_path.c_str());
    return s;
  }
  return absl::OkStatus();
}

}  // namespace prefixd
