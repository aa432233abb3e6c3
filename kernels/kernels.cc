// kernels/kernels.cc — the backend-independent parts of kernels.h: dtypes, Tensor views,
// DeviceTensor ownership and the shared random streams (SplitMix64) that every backend
// must reproduce bit for bit.
#include "kernels/kernels.h"

#include <functional>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/check.h"

namespace prefixd {
namespace {

constexpr uint64_t kGoldenGamma = 0x9E3779B97F4A7C15ull;

// The SplitMix64 output function (Steele, Lea, Flood 2014) applied to one state value.
uint64_t SplitMix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The i-th (0-based) output of a SplitMix64 stream seeded with `seed`, as a float in
// [0, 1) with 24 random bits, so every value is exact in fp32.
float StreamUniform(uint64_t seed, uint64_t i) {
  const uint64_t bits = SplitMix64(seed + (i + 1) * kGoldenGamma) >> 40;
  return static_cast<float>(bits) * (1.0f / 16777216.0f);
}

}  // namespace

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kBF16:
    case DType::kF16:
      return 2;
  }
  PREFIXD_CHECK(false, "unknown dtype ", static_cast<int>(dtype));
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "f32";
    case DType::kBF16:
      return "bf16";
    case DType::kF16:
      return "f16";
    case DType::kI32:
      return "i32";
  }
  PREFIXD_CHECK(false, "unknown dtype ", static_cast<int>(dtype));
}

const char* DeviceKindName(DeviceKind device) {
  switch (device) {
    case DeviceKind::kCpu:
      return "cpu";
    case DeviceKind::kCuda:
      return "cuda";
  }
  PREFIXD_CHECK(false, "unknown device kind ", static_cast<int>(device));
}

// ---- Tensor ----

Tensor::Tensor(void* data, DType dtype, std::initializer_list<int64_t> dims)
    : Tensor(data, dtype, absl::Span<const int64_t>(dims.begin(), dims.size())) {}

Tensor::Tensor(void* data, DType dtype, absl::Span<const int64_t> dims)
    : data(data), dtype(dtype), rank(static_cast<int>(dims.size())) {
  PREFIXD_CHECK(dims.size() <= static_cast<size_t>(kMaxRank), "tensor of rank ", dims.size(),
                " exceeds kMaxRank ", kMaxRank);
  for (int i = 0; i < rank; ++i) {
    PREFIXD_CHECK(dims[i] >= 0, "negative dimension in [", absl::StrJoin(dims, ", "), "]");
    shape[i] = dims[i];
  }
}

int64_t Tensor::numel() const {
  return std::accumulate(shape.begin(), shape.begin() + rank, int64_t{1},
                         std::multiplies<int64_t>());
}

Tensor Tensor::Rows(int64_t begin, int64_t end) const {
  PREFIXD_CHECK(rank >= 1, "Rows of a scalar ", ShapeString());
  PREFIXD_CHECK(0 <= begin && begin <= end && end <= shape[0], "Rows [", begin, ", ", end, ") of ",
                ShapeString());
  Tensor rows = *this;
  rows.shape[0] = end - begin;
  const int64_t row_elements = std::accumulate(shape.begin() + 1, shape.begin() + rank, int64_t{1},
                                               std::multiplies<int64_t>());
  rows.data = static_cast<char*>(data) + begin * row_elements * DTypeSize(dtype);
  return rows;
}

Tensor Tensor::Reshaped(std::initializer_list<int64_t> dims) const {
  Tensor reshaped(data, dtype, dims);
  PREFIXD_CHECK(reshaped.numel() == numel(), "cannot reshape ", ShapeString(), " to ",
                reshaped.ShapeString());
  return reshaped;
}

std::string Tensor::ShapeString() const {
  return absl::StrCat(DTypeName(dtype), "[",
                      absl::StrJoin(shape.begin(), shape.begin() + rank, ", "), "]");
}

// ---- DeviceTensor ----

DeviceTensor& DeviceTensor::operator=(DeviceTensor&& other) noexcept {
  if (this != &other) {
    if (backend_ != nullptr && view_.data != nullptr) backend_->Free(view_.data);
    backend_ = std::exchange(other.backend_, nullptr);
    view_ = std::exchange(other.view_, Tensor());
  }
  return *this;
}

DeviceTensor::~DeviceTensor() {
  if (backend_ != nullptr && view_.data != nullptr) backend_->Free(view_.data);
}

// ---- Shared random streams ----

float SamplingUniform(uint64_t seed, uint64_t step) { return StreamUniform(seed, step); }

float RandomValue(uint64_t seed, uint64_t index, float scale) {
  // 2u - 1 is exact in fp32 for a 24-bit u, so the only rounding is the product.
  return scale * (2.0f * StreamUniform(seed, index) - 1.0f);
}

}  // namespace prefixd
