// bench/tokenizer/chat_template_bench.cc — the Jinja interpreter (tokenizer/jinja) on the
// Llama 3.1 chat template: parsing it, and rendering conversations of 2, 20 and 100
// messages with two tool schemas (the prompt a tool-using request builds). Messages are
// ~200 characters; from 4 messages on, one assistant turn is a tool call answered by a
// tool reply. Every benchmark reports the median of its repetitions; bytes_per_second is
// the template source parsed, or the prompt text rendered.
//
//   build/bench/tokenizer/chat_template_bench
//   build/bench/tokenizer/chat_template_bench --benchmark_filter=Render
//
// The template is read from ../shared/chat_templates/llama3.1-instruct.jinja (beside the
// source tree); without it the embedded Llama 3 template below stands in, and the tool
// schemas are then passed but not rendered.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "benchmark/benchmark.h"
#include "nlohmann/json.hpp"
#include "tokenizer/jinja/template.h"

namespace prefixd {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kRepetitions = 10;
constexpr double kMinTime = 0.2;

// Meta-Llama-3-8B-Instruct's template: the fallback when ../shared is absent.
constexpr char kLlama3Template[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}";

const std::string& TemplateSource() {
  static const std::string* source = [] {
    std::ifstream in(PREFIXD_CHAT_TEMPLATES_DIR "/llama3.1-instruct.jinja", std::ios::binary);
    if (!in) {
      std::cerr << "chat_template_bench: " PREFIXD_CHAT_TEMPLATES_DIR
                   "/llama3.1-instruct.jinja not found; using the embedded Llama 3 template\n";
      return new std::string(kLlama3Template);
    }
    std::ostringstream text;
    text << in.rdbuf();
    return new std::string(text.str());
  }();
  return *source;
}

jinja::Template ParseOrDie(const std::string& source) {
  absl::StatusOr<jinja::Template> t = jinja::Template::Parse(source);
  if (!t.ok()) {
    std::cerr << "chat_template_bench: parse failed: " << t.status() << "\n";
    std::abort();
  }
  return *std::move(t);
}

// Deterministic prose of about `length` characters, different for each `seed`.
std::string Prose(int seed, size_t length) {
  static const char* const kWords[] = {
      "the",     "cache",  "prefix", "request", "model",       "token",  "block",      "weather",
      "Paris",   "answer", "could",  "should",  "please",      "which",  "between",    "degrees",
      "latency", "server", "batch",  "context", "window",      "memory", "\"quoted\"", "naïve",
      "résumé",  "über",   "42",     "3.14",    "(see below)", "e.g.",   "tomorrow",   "today"};
  constexpr int kWordCount = sizeof(kWords) / sizeof(kWords[0]);
  std::string out;
  uint32_t state = 2166136261u ^ static_cast<uint32_t>(seed);
  while (out.size() < length) {
    state = state * 1664525u + 1013904223u;
    if (!out.empty()) out += (state >> 28) == 0 ? ".\n" : " ";
    out += kWords[(state >> 8) % kWordCount];
  }
  return out + ".";
}

Json Tools() {
  return Json::parse(R"([
    {"type": "function", "function": {
      "name": "get_current_weather",
      "description": "Get the current weather in a given location",
      "parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "City and country, e.g. Paris, France"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"],
                 "description": "The temperature unit"}},
        "required": ["location"]}}},
    {"type": "function", "function": {
      "name": "search_documents",
      "description": "Full-text search over the user's documents; returns the top matches",
      "parameters": {"type": "object", "properties": {
        "query": {"type": "string", "description": "What to look for"},
        "limit": {"type": "integer", "description": "How many matches, 1 to 50"}},
        "required": ["query"]}}}
  ])");
}

// system, user, assistant tool call, tool reply, assistant, then user/assistant in turn;
// `n` messages in all (2: system + user).
Json Conversation(int n) {
  Json messages = Json::array();
  messages.push_back({{"role", "system"}, {"content", Prose(0, 200)}});
  for (int i = 1; i < n; ++i) {
    if (n >= 4 && i == 2) {
      messages.push_back(Json::parse(R"({"role": "assistant", "content": "", "tool_calls": [
          {"id": "call_0001", "type": "function", "function": {"name": "get_current_weather",
           "arguments": {"location": "Paris, France", "unit": "celsius"}}}]})"));
    } else if (n >= 4 && i == 3) {
      messages.push_back(Json::parse(R"({"role": "tool", "tool_call_id": "call_0001",
          "content": "{\"temperature\": 22, \"unit\": \"celsius\", \"sky\": \"clear\"}"})"));
    } else {
      // Odd positions are users, with or without the tool exchange at 2 and 3.
      const bool user = i % 2 == 1;
      messages.push_back({{"role", user ? "user" : "assistant"}, {"content", Prose(i, 200)}});
    }
  }
  return messages;
}

Json Variables(int messages) {
  return Json{{"messages", Conversation(messages)},
              {"tools", Tools()},
              {"documents", nullptr},
              {"add_generation_prompt", true},
              {"bos_token", "<|begin_of_text|>"},
              {"eos_token", "<|eot_id|>"}};
}

jinja::RenderOptions FrozenClock() {
  jinja::RenderOptions options;
  options.strftime_now = [](std::string_view) { return std::string("15 Jan 2026"); };
  return options;
}

void BM_ParseLlama31(benchmark::State& state) {
  const std::string& source = TemplateSource();
  for (auto _ : state) {
    absl::StatusOr<jinja::Template> t = jinja::Template::Parse(source);
    benchmark::DoNotOptimize(t);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(source.size()));
}
BENCHMARK(BM_ParseLlama31)
    ->MinTime(kMinTime)
    ->Repetitions(kRepetitions)
    ->ReportAggregatesOnly(true);

void BM_RenderLlama31Tools(benchmark::State& state) {
  const jinja::Template t = ParseOrDie(TemplateSource());
  const Json variables = Variables(static_cast<int>(state.range(0)));
  const jinja::RenderOptions options = FrozenClock();
  size_t bytes = 0;
  for (auto _ : state) {
    absl::StatusOr<std::string> out = t.Render(variables, options);
    if (!out.ok()) {
      state.SkipWithError(std::string(out.status().message()).c_str());
      return;
    }
    bytes = out->size();
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
  state.counters["prompt_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_RenderLlama31Tools)
    ->ArgName("messages")
    ->Arg(2)
    ->Arg(20)
    ->Arg(100)
    ->MinTime(kMinTime)
    ->Repetitions(kRepetitions)
    ->ReportAggregatesOnly(true);

}  // namespace
}  // namespace prefixd

BENCHMARK_MAIN();
