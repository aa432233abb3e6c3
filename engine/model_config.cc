#include "engine/model_config.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <numbers>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace prefixd {
namespace {

using Json = nlohmann::json;

// This Abseil is built with its own absl::string_view, which StrCat takes and
// std::string_view does not convert to.
absl::string_view AsAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Limits that no real Llama-family model comes near; they keep every size product that the
// engine computes (weights, KV blocks) far from overflowing int64, and a typo from turning
// into a multi-terabyte allocation.
constexpr int64_t kMaxVocabSize = int64_t{1} << 24;
constexpr int64_t kMaxHiddenSize = int64_t{1} << 17;
constexpr int64_t kMaxIntermediateSize = int64_t{1} << 20;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxHeadDim = 1024;
constexpr int64_t kMaxPositions = int64_t{1} << 30;
constexpr size_t kMaxConfigBytes = size_t{16} << 20;

constexpr ModelArchitecture kArchitectures[] = {
    ModelArchitecture::kLlama, ModelArchitecture::kMistral, ModelArchitecture::kQwen2};

std::string SupportedArchitectures() {
  std::vector<std::string> names;
  for (ModelArchitecture a : kArchitectures) names.emplace_back(ArchitectureName(a));
  return absl::StrJoin(names, ", ");
}

// A JSON value for an error message, cut short so a huge value cannot flood a log.
std::string Quote(const Json& value) {
  std::string text = value.dump();
  if (text.size() > 40) text = absl::StrCat(text.substr(0, 37), "...");
  return text;
}

// Reads the fields of one JSON object. The first problem is kept and every later read
// returns a default, so a parser can read a group of fields and check ok() once.
// Errors read "<path>: <prefix><key> ...", e.g. "config.json: rope_scaling.factor ...".
class FieldReader {
 public:
  FieldReader(const Json& object, std::string_view path, std::string prefix = "")
      : object_(object), path_(path), prefix_(std::move(prefix)) {}

  bool ok() const { return status_.ok(); }
  const absl::Status& status() const { return status_; }

  void Fail(absl::StatusCode code, const std::string& message) {
    if (status_.ok()) status_ = absl::Status(code, absl::StrCat(path_, ": ", message));
  }
  void Invalid(const std::string& message) { Fail(absl::StatusCode::kInvalidArgument, message); }
  void Unsupported(const std::string& message) { Fail(absl::StatusCode::kUnimplemented, message); }
  // Keeps the first error of a reader of a nested object.
  void Take(const absl::Status& status) {
    if (status_.ok()) status_ = status;
  }

  std::string Name(std::string_view key) const { return prefix_ + std::string(key); }

  // The value of `key`, or nullptr when it is absent or null (optional fields accept both).
  const Json* Get(std::string_view key) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  std::optional<int64_t> OptionalInt(std::string_view key) {
    const Json* v = Get(key);
    if (v == nullptr || !ok()) return std::nullopt;
    if (v->is_number_integer()) {
      if (v->is_number_unsigned() &&
          v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        Invalid(absl::StrCat(Name(key), " is out of range, got ", Quote(*v)));
        return std::nullopt;
      }
      return v->get<int64_t>();
    }
    // Python writes 4096.0 for a float that holds an integer; accept it when exact.
    if (v->is_number_float()) {
      double d = v->get<double>();
      if (std::isfinite(d) && d == std::trunc(d) && std::fabs(d) < 9.0e15) {
        return static_cast<int64_t>(d);
      }
    }
    Invalid(absl::StrCat(Name(key), " must be an integer, got ", Quote(*v)));
    return std::nullopt;
  }

  int64_t Int(std::string_view key) {
    if (Get(key) == nullptr) {
      Invalid(absl::StrCat("missing required field '", Name(key), "'"));
      return 0;
    }
    return OptionalInt(key).value_or(0);
  }

  // An integer in [1, limit].
  int PositiveInt(std::string_view key, int64_t limit) {
    return CheckPositive(key, Int(key), limit);
  }
  std::optional<int> OptionalPositiveInt(std::string_view key, int64_t limit) {
    std::optional<int64_t> v = OptionalInt(key);
    if (!v.has_value()) return std::nullopt;
    return CheckPositive(key, *v, limit);
  }

  std::optional<double> OptionalNumber(std::string_view key) {
    const Json* v = Get(key);
    if (v == nullptr || !ok()) return std::nullopt;
    if (!v->is_number() || !std::isfinite(v->get<double>())) {
      Invalid(absl::StrCat(Name(key), " must be a number, got ", Quote(*v)));
      return std::nullopt;
    }
    return v->get<double>();
  }

  // A finite number > 0; `fallback` when absent.
  double PositiveNumber(std::string_view key, std::optional<double> fallback) {
    std::optional<double> v = OptionalNumber(key);
    if (!ok()) return 0;
    if (!v.has_value()) {
      if (fallback.has_value()) return *fallback;
      Invalid(absl::StrCat("missing required field '", Name(key), "'"));
      return 0;
    }
    if (!(*v > 0)) Invalid(absl::StrCat(Name(key), " must be positive, got ", *v));
    return *v;
  }

  std::optional<bool> OptionalBool(std::string_view key) {
    const Json* v = Get(key);
    if (v == nullptr || !ok()) return std::nullopt;
    if (!v->is_boolean()) {
      Invalid(absl::StrCat(Name(key), " must be true or false, got ", Quote(*v)));
      return std::nullopt;
    }
    return v->get<bool>();
  }

  std::optional<std::string> OptionalString(std::string_view key) {
    const Json* v = Get(key);
    if (v == nullptr || !ok()) return std::nullopt;
    if (!v->is_string()) {
      Invalid(absl::StrCat(Name(key), " must be a string, got ", Quote(*v)));
      return std::nullopt;
    }
    return v->get<std::string>();
  }

  const Json* OptionalObject(std::string_view key) {
    const Json* v = Get(key);
    if (v == nullptr || !ok()) return nullptr;
    if (!v->is_object()) {
      Invalid(absl::StrCat(Name(key), " must be an object, got ", Quote(*v)));
      return nullptr;
    }
    return v;
  }

 private:
  int CheckPositive(std::string_view key, int64_t v, int64_t limit) {
    if (!ok()) return 0;
    if (v < 1) {
      Invalid(absl::StrCat(Name(key), " must be positive, got ", v));
    } else if (v > limit) {
      Invalid(absl::StrCat(Name(key), " (", v, ") is larger than the limit of ", limit));
    }
    return ok() ? static_cast<int>(v) : 0;
  }

  const Json& object_;
  std::string path_;
  std::string prefix_;
  absl::Status status_;
};

std::optional<ModelArchitecture> ArchitectureFromName(std::string_view name) {
  for (ModelArchitecture a : kArchitectures) {
    if (name == ArchitectureName(a) || name == ArchitectureModelType(a)) return a;
  }
  return std::nullopt;
}

// `architectures` (a list whose first entry names the class), else `model_type`.
void ParseArchitecture(FieldReader& f, ModelConfig& c) {
  std::string name;
  if (const Json* list = f.Get("architectures")) {
    if (!list->is_array() || list->empty() || !(*list)[0].is_string()) {
      f.Invalid(absl::StrCat("architectures must be a non-empty list of class names, got ",
                             Quote(*list)));
      return;
    }
    name = (*list)[0].get<std::string>();
  } else if (std::optional<std::string> type = f.OptionalString("model_type")) {
    name = *type;
  } else {
    f.Invalid("missing required field 'architectures'");
    return;
  }
  std::optional<ModelArchitecture> a = ArchitectureFromName(name);
  if (!a.has_value()) {
    f.Unsupported(absl::StrCat("unsupported architecture '", name,
                               "' (supported: ", SupportedArchitectures(), ")"));
    return;
  }
  c.architecture = *a;
}

// The RoPE type and its parameters, from `rope` (v4 `rope_scaling`, v5 `rope_parameters`).
// "default" leaves c.rope_llama3 empty.
void ParseRopeType(const Json& rope, std::string_view path, const std::string& prefix,
                   FieldReader& f, ModelConfig& c) {
  FieldReader r(rope, path, prefix);
  std::optional<std::string> type = r.OptionalString("rope_type");
  if (!type.has_value()) type = r.OptionalString("type");  // the v4 spelling before 4.45
  if (r.ok() && !type.has_value()) {
    r.Invalid(absl::StrCat("missing required field '", prefix, "rope_type'"));
  }
  if (r.ok() && *type == "llama3") {
    Llama3RopeScaling s;
    s.factor = r.PositiveNumber("factor", std::nullopt);
    s.low_freq_factor = r.PositiveNumber("low_freq_factor", std::nullopt);
    s.high_freq_factor = r.PositiveNumber("high_freq_factor", std::nullopt);
    s.original_max_position_embeddings =
        r.PositiveInt("original_max_position_embeddings", kMaxPositions);
    if (r.ok() && !(s.high_freq_factor > s.low_freq_factor)) {
      r.Invalid(absl::StrCat(prefix, "high_freq_factor (", s.high_freq_factor,
                             ") must be larger than ", prefix, "low_freq_factor (",
                             s.low_freq_factor, ")"));
    }
    c.rope_llama3 = s;
  } else if (r.ok() && *type != "default") {
    r.Unsupported(
        absl::StrCat(prefix, "rope_type '", *type, "' is not supported (default, llama3 are)"));
  }
  f.Take(r.status());
}

// transformers v5 keeps theta and scaling together in `rope_parameters`; v4 has a top-level
// `rope_theta` and an optional `rope_scaling`.
void ParseRope(FieldReader& f, std::string_view path, ModelConfig& c) {
  const double top_level_theta = f.PositiveNumber("rope_theta", 10000.0);
  if (const Json* params = f.OptionalObject("rope_parameters")) {
    FieldReader r(*params, path, "rope_parameters.");
    c.rope_theta = r.PositiveNumber("rope_theta", top_level_theta);
    f.Take(r.status());
    if (f.ok()) ParseRopeType(*params, path, "rope_parameters.", f, c);
    return;
  }
  c.rope_theta = top_level_theta;
  if (const Json* scaling = f.OptionalObject("rope_scaling")) {
    ParseRopeType(*scaling, path, "rope_scaling.", f, c);
  }
}

void ParseTokenIds(FieldReader& f, ModelConfig& c) {
  auto check_id = [&](const char* key, const Json& v) -> std::optional<int32_t> {
    if (!v.is_number_integer()) {
      f.Invalid(absl::StrCat(key, " must be an integer or a list of integers, got ", Quote(v)));
      return std::nullopt;
    }
    int64_t id =
        v.is_number_unsigned()
            ? static_cast<int64_t>(std::min<uint64_t>(v.get<uint64_t>(), uint64_t{1} << 62))
            : v.get<int64_t>();
    if (id < 0 || id >= c.vocab_size) {
      f.Invalid(
          absl::StrCat(key, " ", Quote(v), " is outside the vocabulary [0, ", c.vocab_size, ")"));
      return std::nullopt;
    }
    return static_cast<int32_t>(id);
  };
  if (const Json* bos = f.Get("bos_token_id")) c.bos_token_id = check_id("bos_token_id", *bos);
  if (const Json* eos = f.Get("eos_token_id")) {
    if (eos->is_array()) {
      for (const Json& id : *eos) {
        std::optional<int32_t> v = check_id("eos_token_id", id);
        if (!v.has_value()) return;
        c.eos_token_ids.push_back(*v);
      }
    } else if (std::optional<int32_t> v = check_id("eos_token_id", *eos)) {
      c.eos_token_ids.push_back(*v);
    }
  }
}

absl::StatusOr<std::string> ReadConfigFile(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
  std::string text;
  char buffer[1 << 16];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0 && text.size() <= kMaxConfigBytes) {
    text.append(buffer, n);
  }
  const int read_errno = errno;
  const bool failed = std::ferror(file) != 0;
  std::fclose(file);
  if (failed) return absl::ErrnoToStatus(read_errno, absl::StrCat("cannot read ", path));
  if (text.size() > kMaxConfigBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": larger than ", kMaxConfigBytes,
                                                   " bytes, which is too large for a config.json"));
  }
  return text;
}

std::string FormatCount(int64_t n) {
  if (n >= 1'000'000'000) return absl::StrFormat("%.2f B", n / 1e9);
  if (n >= 1'000'000) return absl::StrFormat("%.2f M", n / 1e6);
  if (n >= 1'000) return absl::StrFormat("%.2f K", n / 1e3);
  return absl::StrCat(n);
}

}  // namespace

std::string_view ArchitectureName(ModelArchitecture architecture) {
  switch (architecture) {
    case ModelArchitecture::kLlama:
      return "LlamaForCausalLM";
    case ModelArchitecture::kMistral:
      return "MistralForCausalLM";
    case ModelArchitecture::kQwen2:
      return "Qwen2ForCausalLM";
  }
  return "unknown";
}

std::string_view ArchitectureModelType(ModelArchitecture architecture) {
  switch (architecture) {
    case ModelArchitecture::kLlama:
      return "llama";
    case ModelArchitecture::kMistral:
      return "mistral";
    case ModelArchitecture::kQwen2:
      return "qwen2";
  }
  return "unknown";
}

namespace {

// The top-level object of a JSON file; `path` names it in errors.
absl::StatusOr<Json> ParseJsonObject(std::string_view json, std::string_view path) {
  Json root;
  try {
    root = Json::parse(json.begin(), json.end());
  } catch (const Json::exception& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 3, column 5: ...".
    std::string_view what = e.what();
    if (size_t end = what.find("] "); what.starts_with("[json.") && end != what.npos) {
      what.remove_prefix(end + 2);
    }
    return absl::InvalidArgumentError(absl::StrCat(AsAbsl(path), ": invalid JSON: ", AsAbsl(what)));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(AsAbsl(path), ": expected a JSON object at the top level, got ", Quote(root)));
  }
  return root;
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json, std::string_view path) {
  absl::StatusOr<Json> parsed = ParseJsonObject(json, path);
  if (!parsed.ok()) return parsed.status();
  const Json& root = *parsed;

  ModelConfig c;
  FieldReader f(root, path);
  ParseArchitecture(f, c);
  if (!f.ok()) return f.status();

  c.vocab_size = f.PositiveInt("vocab_size", kMaxVocabSize);
  c.hidden_size = f.PositiveInt("hidden_size", kMaxHiddenSize);
  c.intermediate_size = f.PositiveInt("intermediate_size", kMaxIntermediateSize);
  c.num_layers = f.PositiveInt("num_hidden_layers", kMaxLayers);
  c.num_heads = f.PositiveInt("num_attention_heads", kMaxHeads);
  c.num_kv_heads = f.OptionalPositiveInt("num_key_value_heads", kMaxHeads).value_or(c.num_heads);
  std::optional<int> head_dim = f.OptionalPositiveInt("head_dim", kMaxHeadDim);
  if (!f.ok()) return f.status();

  if (c.num_heads % c.num_kv_heads != 0) {
    f.Invalid(absl::StrCat("num_key_value_heads (", c.num_kv_heads,
                           ") must divide num_attention_heads (", c.num_heads, ")"));
  } else if (head_dim.has_value()) {
    c.head_dim = *head_dim;
  } else if (c.hidden_size % c.num_heads != 0) {
    f.Invalid(absl::StrCat("hidden_size (", c.hidden_size,
                           ") must be divisible by num_attention_heads (", c.num_heads,
                           ") when head_dim is not given"));
  } else {
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (f.ok() && c.head_dim % 2 != 0) {
    f.Invalid(absl::StrCat("head_dim (", c.head_dim, ") must be even for rotary embeddings"));
  }
  if (!f.ok()) return f.status();

  // transformers' defaults for the fields that are optional in its config classes.
  int default_max_positions = 2048;
  if (c.architecture == ModelArchitecture::kMistral) default_max_positions = 4096 * 32;
  if (c.architecture == ModelArchitecture::kQwen2) default_max_positions = 32768;
  c.max_position_embeddings = f.OptionalPositiveInt("max_position_embeddings", kMaxPositions)
                                  .value_or(default_max_positions);
  c.rms_norm_eps = f.PositiveNumber("rms_norm_eps", 1e-6);
  ParseRope(f, path, c);
  c.tie_word_embeddings = f.OptionalBool("tie_word_embeddings").value_or(false);
  if (std::optional<std::string> dtype = f.OptionalString("dtype")) {
    c.dtype = *dtype;
  } else if (std::optional<std::string> torch_dtype = f.OptionalString("torch_dtype")) {
    c.dtype = *torch_dtype;
  }
  if (!f.ok()) return f.status();

  switch (c.architecture) {
    case ModelArchitecture::kLlama:
      // Llama's attention_bias adds a bias to all four projections.
      c.qkv_bias = c.o_bias = f.OptionalBool("attention_bias").value_or(false);
      break;
    case ModelArchitecture::kMistral:
      c.sliding_window = f.OptionalPositiveInt("sliding_window", kMaxPositions);
      break;
    case ModelArchitecture::kQwen2:
      c.qkv_bias = true;
      // Qwen2 windows only the layers from max_window_layers on, and only when asked to.
      if (f.OptionalBool("use_sliding_window").value_or(false)) {
        f.Unsupported("use_sliding_window: true is not supported (per-layer sliding windows)");
      }
      break;
  }

  std::string act = f.OptionalString("hidden_act").value_or("silu");
  if (f.ok() && act != "silu") {
    f.Unsupported(absl::StrCat("hidden_act '", act, "' is not supported (only silu is)"));
  }
  if (f.OptionalBool("mlp_bias").value_or(false)) {
    f.Unsupported("mlp_bias: true is not supported");
  }
  if (std::optional<double> partial = f.OptionalNumber("partial_rotary_factor");
      partial.has_value() && *partial != 1.0) {
    f.Unsupported(
        absl::StrCat("partial_rotary_factor (", *partial, ") is not supported (only 1 is)"));
  }
  if (!f.ok()) return f.status();

  ParseTokenIds(f, c);
  if (!f.ok()) return f.status();
  return c;
}

absl::Status ApplyGenerationConfig(std::string_view json, std::string_view path,
                                   ModelConfig& config) {
  absl::StatusOr<Json> parsed = ParseJsonObject(json, path);
  if (!parsed.ok()) return parsed.status();
  const Json& root = *parsed;
  // Only the stop set is taken: sampling defaults stay the request's business.
  ModelConfig ids;
  ids.vocab_size = config.vocab_size;
  FieldReader f(root, path);
  ParseTokenIds(f, ids);
  if (!f.ok()) return f.status();
  for (int32_t id : ids.eos_token_ids) {
    if (std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(), id) ==
        config.eos_token_ids.end()) {
      config.eos_token_ids.push_back(id);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& folder) {
  const std::string dir = absl::StrCat(folder, folder.ends_with('/') ? "" : "/");
  std::string path = dir + "config.json";
  absl::StatusOr<std::string> text = ReadConfigFile(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<ModelConfig> config = ParseModelConfig(*text, path);
  if (!config.ok()) return config.status();
  const std::string generation_path = dir + "generation_config.json";
  std::error_code ec;
  if (std::filesystem::exists(generation_path, ec)) {
    absl::StatusOr<std::string> generation = ReadConfigFile(generation_path);
    if (!generation.ok()) return generation.status();
    if (absl::Status s = ApplyGenerationConfig(*generation, generation_path, *config); !s.ok()) {
      return s;
    }
  }
  return config;
}

int ModelConfig::max_context_len() const {
  if (sliding_window.has_value() && *sliding_window < max_position_embeddings) {
    return *sliding_window;
  }
  return max_position_embeddings;
}

std::vector<float> ModelConfig::RopeInvFreq() const {
  // Every step below mirrors one torch op on float32 tensors; Python scalars enter those ops
  // as float32 (so theta, factors and 2π are rounded to float first), and `scalar / tensor`
  // is torch's reciprocal(tensor) * scalar.
  const int half = head_dim / 2;
  const float base = static_cast<float>(rope_theta);
  const float dim = static_cast<float>(head_dim);
  std::vector<float> inv_freq(half);
  for (int j = 0; j < half; ++j) {
    inv_freq[j] = 1.0f / std::pow(base, static_cast<float>(2 * j) / dim);
  }
  if (!rope_llama3.has_value()) return inv_freq;

  const Llama3RopeScaling& s = *rope_llama3;
  const float factor = static_cast<float>(s.factor);
  const float low_freq_factor = static_cast<float>(s.low_freq_factor);
  const float old_context_len = static_cast<float>(s.original_max_position_embeddings);
  // These two are Python floats (double) compared against float32 tensors.
  const float low_freq_wavelen =
      static_cast<float>(s.original_max_position_embeddings / s.low_freq_factor);
  const float high_freq_wavelen =
      static_cast<float>(s.original_max_position_embeddings / s.high_freq_factor);
  const float smooth_range = static_cast<float>(s.high_freq_factor - s.low_freq_factor);
  const float two_pi = static_cast<float>(2 * std::numbers::pi);
  for (float& f : inv_freq) {
    const float wavelen = (1.0f / f) * two_pi;
    const float inv_freq_llama = wavelen > low_freq_wavelen ? f / factor : f;
    const float smooth = ((1.0f / wavelen) * old_context_len - low_freq_factor) / smooth_range;
    const float smoothed = (1.0f - smooth) * inv_freq_llama / factor + smooth * inv_freq_llama;
    const bool is_medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    f = is_medium ? smoothed : inv_freq_llama;
  }
  return inv_freq;
}

int64_t ModelConfig::NumParameters() const {
  const int64_t d = hidden_size;
  const int64_t q = q_size();
  const int64_t kv = kv_size();
  int64_t layer = d * q + 2 * d * kv + q * d   // q, k, v, o projections
                  + 3 * d * intermediate_size  // gate, up, down
                  + 2 * d;                     // input and post-attention RMSNorm
  if (qkv_bias) layer += q + 2 * kv;
  if (o_bias) layer += d;
  int64_t total = int64_t{vocab_size} * d + num_layers * layer + d;
  if (!tie_word_embeddings) total += int64_t{vocab_size} * d;
  return total;
}

std::string ModelConfig::Summary() const {
  return absl::StrCat(AsAbsl(ArchitectureModelType(architecture)), " ", num_layers,
                      " layers, hidden ", hidden_size, ", ", num_heads, " heads (", num_kv_heads,
                      " kv) × ", head_dim, ", vocab ", vocab_size, ", ",
                      FormatCount(NumParameters()), " params");
}

// ---- Random presets ----

namespace {

ModelConfig TinyPreset() {
  ModelConfig c;
  c.architecture = ModelArchitecture::kLlama;
  c.vocab_size = 512;
  c.hidden_size = 256;
  c.intermediate_size = 688;
  c.num_layers = 4;
  c.num_heads = 8;
  c.num_kv_heads = 4;
  c.head_dim = 32;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  c.rope_llama3 = Llama3RopeScaling{.factor = 8.0,
                                    .low_freq_factor = 1.0,
                                    .high_freq_factor = 4.0,
                                    .original_max_position_embeddings = 1024};
  c.max_position_embeddings = 4096;
  c.tie_word_embeddings = true;
  c.bos_token_id = 504;
  c.eos_token_ids = {505};
  c.dtype = "float32";
  return c;
}

ModelConfig Llama32_1BPreset() {
  ModelConfig c;
  c.architecture = ModelArchitecture::kLlama;
  c.vocab_size = 128256;
  c.hidden_size = 2048;
  c.intermediate_size = 8192;
  c.num_layers = 16;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 64;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  c.rope_llama3 = Llama3RopeScaling{.factor = 32.0,
                                    .low_freq_factor = 1.0,
                                    .high_freq_factor = 4.0,
                                    .original_max_position_embeddings = 8192};
  c.max_position_embeddings = 131072;
  c.tie_word_embeddings = true;
  c.bos_token_id = 128000;
  c.eos_token_ids = {128001, 128008, 128009};
  c.dtype = "bfloat16";
  return c;
}

ModelConfig Llama3_8BPreset() {
  ModelConfig c;
  c.architecture = ModelArchitecture::kLlama;
  c.vocab_size = 128256;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_layers = 32;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  c.max_position_embeddings = 8192;
  c.tie_word_embeddings = false;
  c.bos_token_id = 128000;
  c.eos_token_ids = {128001, 128009};
  c.dtype = "bfloat16";
  return c;
}

ModelConfig Qwen2_05BPreset() {
  ModelConfig c;
  c.architecture = ModelArchitecture::kQwen2;
  c.vocab_size = 151936;
  c.hidden_size = 896;
  c.intermediate_size = 4864;
  c.num_layers = 24;
  c.num_heads = 14;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 1000000.0;
  c.max_position_embeddings = 32768;
  c.tie_word_embeddings = true;
  c.qkv_bias = true;
  c.eos_token_ids = {151643};
  c.dtype = "bfloat16";
  return c;
}

struct Preset {
  std::string_view name;
  ModelConfig (*make)();
};

constexpr Preset kPresets[] = {
    {"tiny", &TinyPreset},
    {"llama-3.2-1b", &Llama32_1BPreset},
    {"llama-3-8b", &Llama3_8BPreset},
    {"qwen2-0.5b", &Qwen2_05BPreset},
};

}  // namespace

absl::StatusOr<ModelConfig> RandomPresetConfig(std::string_view name) {
  for (const Preset& p : kPresets) {
    if (p.name == name) return p.make();
  }
  return absl::NotFoundError(absl::StrCat("unknown random model preset '", AsAbsl(name),
                                          "' (known: ", absl::StrJoin(RandomPresetNames(), ", "),
                                          ")"));
}

std::vector<std::string> RandomPresetNames() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.emplace_back(p.name);
  return names;
}

}  // namespace prefixd
