#include "engine/safetensors.h"

#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tools/safetensors_writer.h"

namespace prefixd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Raw bytes of any trivially copyable values.
template <typename T>
std::string Bytes(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

// A safetensors file built by hand: the 8-byte little-endian length, then `header`, then
// `data`. `header_len` overrides the length field.
std::string RawFile(const std::string& header, const std::string& data,
                    std::optional<uint64_t> header_len = std::nullopt) {
  const uint64_t n = header_len.value_or(header.size());
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(n >> (8 * i)));
  return out + header + data;
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "safetensors_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  std::string WriteRaw(const std::string& name, const std::string& contents) {
    std::ofstream(Path(name), std::ios::binary) << contents;
    return Path(name);
  }

  // The error of opening a file holding `contents`; fails the test if it opens.
  std::string OpenError(const std::string& contents) {
    const std::string path = WriteRaw("bad.safetensors", contents);
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(path);
    EXPECT_FALSE(f.ok()) << "opened";
    if (f.ok()) return "";
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << f.status();
    EXPECT_THAT(f.status().message(), HasSubstr(path + ": ")) << "error names the file";
    return std::string(f.status().message());
  }

  std::string dir_;
};

// ---- Writer and reader round trip ----

TEST_F(SafetensorsTest, RoundTripsEverySupportedDtype) {
  const std::vector<float> f32 = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, 7.0f};
  const std::vector<uint16_t> f16 = {0x3C00, 0xC000, 0x7BFF, 0x0001};  // 1, -2, max, tiny
  const std::vector<uint16_t> bf16 = {0x3F80, 0x4040, 0xBF00};         // 1, 3, -0.5
  const std::vector<NamedTensor> tensors = {
      {"model.embed_tokens.weight", DType::kF32, {2, 3}, Bytes(f32)},
      {"half", DType::kF16, {4}, Bytes(f16)},
      {"brain", DType::kBF16, {3, 1}, Bytes(bf16)},
      {"scalar", DType::kF32, {}, Bytes(std::vector<float>{42.0f})},
      {"empty", DType::kBF16, {0, 8}, ""},
  };
  const std::string path = Path("model.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors, {{"format", "pt"}}).ok());

  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  const SafetensorsFile& file = **f;
  EXPECT_THAT(file.metadata(),
              ElementsAre(std::pair<const std::string, std::string>{"format", "pt"}));
  std::vector<std::string> names;
  for (const TensorInfo& t : file.tensors()) names.push_back(t.name);
  EXPECT_THAT(names, ElementsAre("brain", "empty", "half", "model.embed_tokens.weight", "scalar"));

  for (const NamedTensor& want : tensors) {
    const TensorInfo* t = file.Find(want.name);
    ASSERT_NE(t, nullptr) << want.name;
    EXPECT_EQ(t->dtype, want.dtype) << want.name;
    EXPECT_EQ(t->shape, want.shape) << want.name;
    EXPECT_EQ(t->nbytes, want.bytes.size()) << want.name;
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(t->data), t->nbytes), want.bytes)
        << want.name;
  }
  EXPECT_EQ(file.Find("scalar")->numel(), 1);
  EXPECT_EQ(file.Find("empty")->numel(), 0);
  EXPECT_EQ(file.Find("nope"), nullptr);
}

TEST_F(SafetensorsTest, WriterPadsHeaderAndAlignsTensors) {
  const std::vector<NamedTensor> tensors = {
      {"a_half", DType::kBF16, {3}, std::string(6, '\1')},
      {"b_float", DType::kF32, {3}, std::string(12, '\2')},
      {"c_half", DType::kF16, {1}, std::string(2, '\3')},
  };
  const std::string path = Path("x.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors).ok());
  std::ifstream in(path, std::ios::binary);
  std::string contents((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  uint64_t header_len = 0;
  std::memcpy(&header_len, contents.data(), 8);
  EXPECT_EQ(header_len % 8, 0u);
  EXPECT_EQ(contents.size(), 8 + header_len + 20);
  // Padding is spaces after the JSON, and there is no __metadata__ when none was given.
  const std::string header = contents.substr(8, header_len);
  EXPECT_EQ(header.find("__metadata__"), std::string::npos);
  EXPECT_EQ(header.find_last_not_of(' '), header.find_last_of('}'));

  // Largest elements first, and every tensor starts at a file offset that is a multiple of
  // its element size.
  const nlohmann::json h = nlohmann::json::parse(header);
  EXPECT_EQ(h["b_float"]["data_offsets"], nlohmann::json({0, 12}));
  EXPECT_EQ(h["a_half"]["data_offsets"], nlohmann::json({12, 18}));
  EXPECT_EQ(h["c_half"]["data_offsets"], nlohmann::json({18, 20}));
  EXPECT_EQ((8 + header_len) % 4, 0u);
  ASSERT_TRUE(SafetensorsFile::Open(path).ok());
}

TEST_F(SafetensorsTest, WriterRejectsInconsistentTensors) {
  absl::Status s = WriteSafetensors(Path("w.safetensors"),
                                    {{NamedTensor{"w", DType::kF32, {2, 3}, std::string(20, 0)}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("tensor 'w' has 20 bytes, but shape [2, 3] of F32 needs 24"));

  const NamedTensor t{"w", DType::kF32, {1}, std::string(4, 0)};
  s = WriteSafetensors(Path("w.safetensors"), {t, t});
  EXPECT_THAT(s.message(), HasSubstr("tensor 'w' is given twice"));
  EXPECT_FALSE(std::filesystem::exists(Path("w.safetensors")));

  s = WriteSafetensors(Path("no/such/dir/w.safetensors"), {t});
  EXPECT_THAT(s.message(), HasSubstr("no/such/dir/w.safetensors"));
}

TEST_F(SafetensorsTest, I32IsWrittenButNotLoaded) {
  const std::string path = Path("ids.safetensors");
  ASSERT_TRUE(
      WriteSafetensors(path, {{NamedTensor{"ids", DType::kI32, {2}, std::string(8, 0)}}}).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(path);
  EXPECT_THAT(f.status().message(),
              HasSubstr("dtype 'I32' of tensor 'ids' is not supported (F32, F16, BF16 are)"));
}

// ---- Malformed files, one problem each ----

TEST_F(SafetensorsTest, MissingFile) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(Path("none"));
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(f.status().message(), HasSubstr(Path("none")));
}

TEST_F(SafetensorsTest, DirectoryIsNotAFile) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(dir_);
  EXPECT_THAT(f.status().message(), HasSubstr("not a regular file"));
}

TEST_F(SafetensorsTest, ShorterThanTheLengthField) {
  EXPECT_THAT(OpenError("abc"), HasSubstr("file of 3 bytes is too short"));
  EXPECT_THAT(OpenError(""), HasSubstr("file of 0 bytes is too short"));
}

TEST_F(SafetensorsTest, HeaderLongerThanTheFile) {
  EXPECT_THAT(OpenError(RawFile("{}", "", 1000)),
              HasSubstr("header of 1000 bytes is larger than the file (10 bytes)"));
  EXPECT_THAT(OpenError(RawFile("{}", "", ~uint64_t{0})),
              HasSubstr("header of 18446744073709551615 bytes is larger than the file"));
}

TEST_F(SafetensorsTest, InvalidJson) {
  EXPECT_THAT(OpenError(RawFile("{\"w\": ", "")), HasSubstr("invalid JSON in the header"));
  EXPECT_THAT(OpenError(RawFile("", "")), HasSubstr("invalid JSON in the header"));
}

TEST_F(SafetensorsTest, HeaderNotAnObject) {
  EXPECT_THAT(OpenError(RawFile("[1, 2]", "")),
              HasSubstr("the header must be a JSON object, got [1,2]"));
}

TEST_F(SafetensorsTest, EntryNotAnObject) {
  EXPECT_THAT(OpenError(RawFile(R"({"w": 5})", "")), HasSubstr("entry 'w' is not an object"));
}

TEST_F(SafetensorsTest, DuplicateTensorName) {
  const std::string entry = R"({"dtype": "F32", "shape": [1], "data_offsets": [0, 4]})";
  EXPECT_THAT(OpenError(RawFile("{\"w\": " + entry + ", \"w\": " + entry + "}", "abcd")),
              HasSubstr("'w' appears twice in the header"));
}

TEST_F(SafetensorsTest, UnknownDtype) {
  EXPECT_THAT(
      OpenError(RawFile(R"({"w": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}})", "a")),
      HasSubstr("unknown dtype 'Q7' of tensor 'w'"));
  EXPECT_THAT(OpenError(RawFile(R"({"w": {"shape": [1], "data_offsets": [0, 1]}})", "a")),
              HasSubstr("tensor 'w' has no \"dtype\" string"));
}

TEST_F(SafetensorsTest, UnsupportedDtype) {
  EXPECT_THAT(OpenError(RawFile(R"({"x": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})",
                                std::string(8, 0))),
              HasSubstr("dtype 'F64' of tensor 'x' is not supported (F32, F16, BF16 are)"));
  EXPECT_THAT(OpenError(RawFile(
                  R"({"x": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}})", "a")),
              HasSubstr("dtype 'F8_E4M3' of tensor 'x' is not supported"));
}

TEST_F(SafetensorsTest, BadShapeDimensions) {
  EXPECT_THAT(OpenError(RawFile(
                  R"({"w": {"dtype": "F32", "shape": [-1, 2], "data_offsets": [0, 0]}})", "")),
              HasSubstr("tensor 'w' has shape [-1,2]: dimensions must be non-negative integers"));
  EXPECT_THAT(
      OpenError(RawFile(R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 10]}})",
                        std::string(10, 0))),
      HasSubstr("dimensions must be non-negative integers"));
  EXPECT_THAT(OpenError(RawFile(R"({"w": {"dtype": "F32", "data_offsets": [0, 0]}})", "")),
              HasSubstr("tensor 'w' has no \"shape\" list"));
}

TEST_F(SafetensorsTest, NumelOverflow) {
  EXPECT_THAT(OpenError(RawFile(R"({"w": {"dtype": "BF16", "shape": [4294967296, 4294967296, 16],
                                         "data_offsets": [0, 0]}})",
                                "")),
              HasSubstr("too many elements"));
}

TEST_F(SafetensorsTest, BadDataOffsets) {
  const char* kWants = "expected [begin, end], two integers with 0 <= begin <= end";
  EXPECT_THAT(
      OpenError(RawFile(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", "abcd")),
      HasSubstr(kWants));
  EXPECT_THAT(OpenError(RawFile(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})",
                                std::string(8, 0))),
              HasSubstr("tensor 'w' has data_offsets [8,4]"));
  EXPECT_THAT(OpenError(RawFile(
                  R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": ["0", 4]}})", "abcd")),
              HasSubstr(kWants));
  EXPECT_THAT(OpenError(RawFile(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})",
                                "abcd")),
              HasSubstr(kWants));
  EXPECT_THAT(OpenError(RawFile(R"({"w": {"dtype": "F32", "shape": [1]}})", "abcd")),
              HasSubstr("data_offsets missing"));
}

TEST_F(SafetensorsTest, SpanDisagreesWithShape) {
  EXPECT_THAT(OpenError(RawFile(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})",
                                "abcd")),
              HasSubstr("tensor 'w' has data_offsets [0, 4] spanning 4 bytes, but shape [2] of F32 "
                        "needs 8 bytes"));
}

TEST_F(SafetensorsTest, TruncatedFile) {
  EXPECT_THAT(
      OpenError(RawFile(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})",
                        std::string(8, 0))),
      HasSubstr("truncated file: tensor 'w' ends at byte 16 of the data section, which has 8 "
                "bytes"));
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  EXPECT_THAT(OpenError(RawFile(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                                std::string(12, 0))),
              HasSubstr("tensors 'a' (bytes 0 to 8) and 'b' (bytes 4 to 12) overlap"));
}

TEST_F(SafetensorsTest, MetadataMustMapStringsToStrings) {
  EXPECT_THAT(OpenError(RawFile(R"({"__metadata__": {"format": 1}})", "")),
              HasSubstr("__metadata__ value of 'format' must be a string"));
  EXPECT_THAT(OpenError(RawFile(R"({"__metadata__": "pt"})", "")),
              HasSubstr("__metadata__ must be an object"));
}

TEST_F(SafetensorsTest, GapsAndEmptyHeadersAreFine) {
  // Unused bytes between tensors and trailing padding are harmless; so is a tensorless file.
  const std::string path = WriteRaw(
      "ok.safetensors",
      RawFile(R"({"w": {"dtype": "F16", "shape": [1], "data_offsets": [4, 6]}}    )", "xxxxAB??"));
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>((*f)->Find("w")->data), 2), "AB");
  f = SafetensorsFile::Open(WriteRaw("empty.safetensors", RawFile("{}", "")));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE((*f)->tensors().empty());
}

// ---- Model folders ----

class ModelWeightsTest : public SafetensorsTest {
 protected:
  static NamedTensor F32(const std::string& name, std::vector<int64_t> shape, float first) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(n);
    for (int64_t i = 0; i < n; ++i) v[i] = first + i;
    return NamedTensor{name, DType::kF32, std::move(shape), Bytes(v)};
  }

  void WriteIndex(const std::string& json) { WriteRaw("model.safetensors.index.json", json); }

  // a, b in shard 1; c in shard 2; shard 2 also holds "stray", which the index omits.
  void WriteShardedModel() {
    ASSERT_TRUE(WriteSafetensors(Path("model-00001-of-00002.safetensors"),
                                 {F32("a", {2, 3}, 0), F32("b", {4}, 10)})
                    .ok());
    ASSERT_TRUE(WriteSafetensors(Path("model-00002-of-00002.safetensors"),
                                 {F32("c", {3, 2}, 20), F32("stray", {1}, 30)})
                    .ok());
    WriteIndex(R"({"metadata": {"total_size": 64}, "weight_map": {
        "a": "model-00001-of-00002.safetensors",
        "b": "model-00001-of-00002.safetensors",
        "c": "model-00002-of-00002.safetensors"}})");
  }

  absl::Status OpenError() {
    absl::StatusOr<ModelWeights> w = ModelWeights::OpenFolder(dir_);
    EXPECT_FALSE(w.ok());
    return w.status();
  }
};

float FirstFloat(const TensorInfo* t) {
  float v = 0;
  std::memcpy(&v, t->data, sizeof(v));
  return v;
}

TEST_F(ModelWeightsTest, SingleFileFolder) {
  ASSERT_TRUE(
      WriteSafetensors(Path("model.safetensors"), {F32("a", {2, 3}, 1), F32("b", {5}, 7)}).ok());
  absl::StatusOr<ModelWeights> w = ModelWeights::OpenFolder(dir_);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_THAT(w->TensorNames(), ElementsAre("a", "b"));
  EXPECT_EQ(w->files().size(), 1u);
  EXPECT_EQ(w->total_bytes(), (6 + 5) * 4u);

  absl::StatusOr<const TensorInfo*> a = w->Require("a", {2, 3});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(FirstFloat(*a), 1.0f);
  EXPECT_EQ(w->Find("b")->shape, std::vector<int64_t>{5});

  absl::StatusOr<const TensorInfo*> missing = w->Require("model.layers.3.mlp.up_proj.weight", {1});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(),
              HasSubstr("missing tensor 'model.layers.3.mlp.up_proj.weight' (looked in " + dir_ +
                        "/model.safetensors)"));

  absl::StatusOr<const TensorInfo*> wrong = w->Require("a", {3, 2});
  EXPECT_THAT(wrong.status().message(), HasSubstr("tensor 'a' in " + dir_ +
                                                  "/model.safetensors has shape [2, 3] but "
                                                  "config.json implies [3, 2]"));
  EXPECT_FALSE(w->Require("b", {5, 1}).ok());
}

TEST_F(ModelWeightsTest, ShardedFolderFollowsTheIndex) {
  WriteShardedModel();
  absl::StatusOr<ModelWeights> opened = ModelWeights::OpenFolder(dir_);
  ASSERT_TRUE(opened.ok()) << opened.status();
  // Moving keeps every TensorInfo where it was.
  const TensorInfo* c_before = opened->Find("c");
  ModelWeights w = *std::move(opened);
  EXPECT_EQ(w.Find("c"), c_before);

  EXPECT_EQ(w.files().size(), 2u);
  EXPECT_THAT(w.TensorNames(), ElementsAre("a", "b", "c"));
  EXPECT_EQ(w.Find("stray"), nullptr);  // in a shard, but not in the weight_map
  EXPECT_EQ(FirstFloat(*w.Require("a", {2, 3})), 0.0f);
  EXPECT_EQ(FirstFloat(*w.Require("b", {4})), 10.0f);
  EXPECT_EQ(FirstFloat(*w.Require("c", {3, 2})), 20.0f);
  EXPECT_THAT(w.Require("c", {6}).status().message(),
              HasSubstr("tensor 'c' in " + dir_ +
                        "/model-00002-of-00002.safetensors has shape "
                        "[3, 2] but config.json implies [6]"));
  EXPECT_THAT(
      w.Require("d", {1}).status().message(),
      HasSubstr("missing tensor 'd' (looked in " + dir_ + "/model.safetensors.index.json)"));
}

TEST_F(ModelWeightsTest, IndexWinsOverASingleFile) {
  WriteShardedModel();
  ASSERT_TRUE(WriteSafetensors(Path("model.safetensors"), {F32("z", {1}, 0)}).ok());
  absl::StatusOr<ModelWeights> w = ModelWeights::OpenFolder(dir_);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_THAT(w->TensorNames(), ElementsAre("a", "b", "c"));
}

TEST_F(ModelWeightsTest, ShardLackingAMappedTensor) {
  WriteShardedModel();
  WriteIndex(R"({"weight_map": {"a": "model-00001-of-00002.safetensors",
                                "c": "model-00002-of-00002.safetensors",
                                "d": "model-00002-of-00002.safetensors"}})");
  EXPECT_THAT(OpenError().message(),
              HasSubstr("model-00002-of-00002.safetensors lacks 1 of the 2 tensors that "
                        "model.safetensors.index.json maps to it: 'd'"));
}

TEST_F(ModelWeightsTest, MissingShardFile) {
  WriteShardedModel();
  std::filesystem::remove(Path("model-00002-of-00002.safetensors"));
  absl::Status s = OpenError();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("maps 1 tensors to model-00002-of-00002.safetensors: "
                                     "cannot open " +
                                     Path("model-00002-of-00002.safetensors")));
}

TEST_F(ModelWeightsTest, MalformedShardIsReportedWithItsPath) {
  WriteShardedModel();
  WriteRaw("model-00001-of-00002.safetensors", "short");
  EXPECT_THAT(OpenError().message(),
              HasSubstr(Path("model-00001-of-00002.safetensors") + ": file of 5 bytes"));
}

TEST_F(ModelWeightsTest, MalformedIndex) {
  WriteIndex("{\"weight_map\": ");
  EXPECT_THAT(OpenError().message(),
              HasSubstr(Path("model.safetensors.index.json") + ": invalid JSON in the index"));
  WriteIndex(R"({"metadata": {}})");
  EXPECT_THAT(OpenError().message(), HasSubstr("missing the \"weight_map\" object"));
  WriteIndex(R"({"weight_map": {"a": 1}})");
  EXPECT_THAT(OpenError().message(), HasSubstr("weight_map entry of 'a' must be a file name"));
}

TEST_F(ModelWeightsTest, IndexCannotPointOutsideTheFolder) {
  WriteShardedModel();
  WriteIndex(R"({"weight_map": {"a": "../model-00001-of-00002.safetensors"}})");
  EXPECT_THAT(OpenError().message(),
              HasSubstr("weight_map entry of 'a' is not a file name in "
                        "the folder: '../model-00001-of-00002.safetensors'"));
}

TEST_F(ModelWeightsTest, FolderWithoutWeights) {
  absl::Status s = OpenError();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(),
              HasSubstr("no model.safetensors or model.safetensors.index.json in " + dir_));
  absl::StatusOr<ModelWeights> w = ModelWeights::OpenFolder(dir_ + "/nonexistent");
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(w.status().message(), HasSubstr(dir_ + "/nonexistent: No such file"));
  w = ModelWeights::OpenFolder(WriteRaw("file", "x"));
  EXPECT_THAT(w.status().message(), HasSubstr(Path("file") + " is not a folder"));
}

}  // namespace
}  // namespace prefixd
