// Golden test: every real chat template in shared/chat_templates renders, under
// transformers' settings, exactly what Python's jinja2 rendered (make_expected.py), or fails
// the same way.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tokenizer/jinja/template.h"

namespace prefixd::jinja {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

const fs::path kCorpusDir = PREFIXD_CHAT_TEMPLATES_DIR;

bool ReadFile(const fs::path& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream buffer;
  buffer << in.rdbuf();
  *out = buffer.str();
  return true;
}

const Json& Cases() {
  static const Json* cases = [] {
    std::string text;
    if (!ReadFile(kCorpusDir / "expected" / "cases.json", &text)) return new Json();
    return new Json(Json::parse(text));
  }();
  return *cases;
}

struct GoldenCase {
  std::string template_name;
  std::string case_name;
};

std::vector<GoldenCase> AllCases() {
  std::vector<GoldenCase> out;
  const Json& cases = Cases();
  if (!cases.contains("templates")) return {{"", ""}};  // the corpus is absent: one skip
  for (const auto& [name, info] : cases["templates"].items())
    for (const auto& [case_name, outcome] : info["cases"].items()) out.push_back({name, case_name});
  return out;
}

// The variables make_expected.py's render() passes.
Json Variables(const GoldenCase& c) {
  const Json& cases = Cases();
  const Json& spec = cases["cases"][c.case_name];
  const Json& info = cases["templates"][c.template_name];
  Json kwargs = spec["kwargs"];
  Json tools = nullptr;
  if (kwargs.contains("tools")) {
    tools = kwargs["tools"];
    kwargs.erase("tools");
  } else if (info["tools_in_every_case"].get<bool>()) {
    tools = cases["cases"]["d_tool_call"]["kwargs"]["tools"];
  }
  bool add_generation_prompt = false;
  if (kwargs.contains("add_generation_prompt")) {
    add_generation_prompt = kwargs["add_generation_prompt"].get<bool>();
    kwargs.erase("add_generation_prompt");
  }
  Json vars = Json::object();
  vars["messages"] = spec["messages"];
  vars["tools"] = tools;
  vars["documents"] = nullptr;
  vars["add_generation_prompt"] = add_generation_prompt;
  if (!info["bos_token"].is_null()) vars["bos_token"] = info["bos_token"];
  if (!info["eos_token"].is_null()) vars["eos_token"] = info["eos_token"];
  for (const auto& [key, value] : kwargs.items()) vars[key] = value;
  return vars;
}

RenderOptions FrozenClock() {
  RenderOptions options;
  options.strftime_now = [](std::string_view format) {
    std::tm frozen{};
    frozen.tm_year = 2026 - 1900;
    frozen.tm_mon = 0;
    frozen.tm_mday = 15;
    frozen.tm_hour = 12;
    frozen.tm_wday = 4;  // a Thursday
    frozen.tm_yday = 14;
    char buf[256];
    size_t n = std::strftime(buf, sizeof(buf), std::string(format).c_str(), &frozen);
    return std::string(buf, n);
  };
  return options;
}

class ChatTemplateCorpusTest : public testing::TestWithParam<GoldenCase> {};

TEST_P(ChatTemplateCorpusTest, RendersLikeJinja2) {
  const GoldenCase& c = GetParam();
  if (c.template_name.empty())
    GTEST_SKIP() << "no chat template corpus at " << kCorpusDir << " (shared/chat_templates)";
  std::string source;
  ASSERT_TRUE(ReadFile(kCorpusDir / (c.template_name + ".jinja"), &source));
  const fs::path base = kCorpusDir / "expected" / (c.template_name + "." + c.case_name);

  absl::StatusOr<Template> parsed = Template::Parse(source);
  std::string expected_error;
  if (ReadFile(base.string() + ".error", &expected_error)) {
    if (!expected_error.empty() && expected_error.back() == '\n') expected_error.pop_back();
    const std::string kind = expected_error.substr(0, expected_error.find(':'));
    if (kind == "TemplateSyntaxError") {
      ASSERT_FALSE(parsed.ok()) << "jinja2 failed to parse: " << expected_error;
      EXPECT_EQ(ErrorKind(parsed.status()), "TemplateSyntaxError") << parsed.status();
      return;
    }
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    absl::StatusOr<std::string> rendered = parsed->Render(Variables(c), FrozenClock());
    ASSERT_FALSE(rendered.ok()) << "jinja2 failed: " << expected_error;
    EXPECT_EQ(ErrorKind(rendered.status()), kind) << rendered.status();
    if (kind == "TemplateError") {
      EXPECT_EQ(std::string(rendered.status().message()),
                expected_error.substr(std::string("TemplateError: ").size()));
    }
    return;
  }
  std::string expected;
  ASSERT_TRUE(ReadFile(base.string() + ".txt", &expected)) << base;
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  absl::StatusOr<std::string> rendered = parsed->Render(Variables(c), FrozenClock());
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  EXPECT_EQ(*rendered, expected);
}

std::string CaseName(const testing::TestParamInfo<GoldenCase>& info) {
  if (info.param.template_name.empty()) return "corpus_absent";
  std::string name = info.param.template_name + "_" + info.param.case_name;
  for (char& ch : name)
    if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(Golden, ChatTemplateCorpusTest, testing::ValuesIn(AllCases()), CaseName);

}  // namespace
}  // namespace prefixd::jinja
