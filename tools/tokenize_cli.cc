// prefixd-tokenize — prefixd's tokenizer on JSON lines, for differential tests against
// Hugging Face tokenizers (tests/tokenizer/hf_parity/hf_parity.mjs drives it).
//
// One request per line on stdin, one response line on stdout, in order:
//   {"text": "...", "add_special_tokens": true}         -> {"ids": [...]}
//   {"decode": [ids], "skip_special_tokens": false}     -> {"hex": "68656c6c6f"}
//       (Decode's bytes in hex: they may be invalid UTF-8, which JSON cannot carry)
//   {"bench": ["...", ...], "add_special_tokens": false}
//       -> {"tokens": N, "seconds": S, "cpu_seconds": C}
//       (encodes the texts one after another on this thread; S and C exclude parsing)
// A line that is not such a request gets {"error": "..."} and the tool goes on.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "nlohmann/json.hpp"
#include "tokenizer/tokenizer.h"

ABSL_FLAG(std::string, tokenizer, "", "path of a Hugging Face tokenizer.json");

namespace prefixd {
namespace {

using Json = nlohmann::json;

std::string Hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

Json Answer(const Tokenizer& tokenizer, const Json& request) {
  if (!request.is_object()) return {{"error", "a request is a JSON object"}};
  const bool add_special = request.value("add_special_tokens", false);
  if (auto it = request.find("text"); it != request.end() && it->is_string()) {
    return {{"ids", tokenizer.Encode(it->get_ref<const std::string&>(), add_special)}};
  }
  if (auto it = request.find("decode"); it != request.end() && it->is_array()) {
    const auto ids = it->get<std::vector<TokenId>>();
    return {{"hex", Hex(tokenizer.Decode(ids, request.value("skip_special_tokens", false)))}};
  }
  if (auto it = request.find("bench"); it != request.end() && it->is_array()) {
    const auto texts = it->get<std::vector<std::string>>();
    size_t tokens = 0;
    const auto start = std::chrono::steady_clock::now();
    const std::clock_t cpu_start = std::clock();
    for (const std::string& text : texts) tokens += tokenizer.Encode(text, add_special).size();
    const double cpu_seconds = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
    const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
    return {{"tokens", tokens}, {"seconds", seconds.count()}, {"cpu_seconds", cpu_seconds}};
  }
  return {{"error", R"(expected "text", "decode" or "bench")"}};
}

}  // namespace
}  // namespace prefixd

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Encodes and decodes JSON-line requests on stdin with a tokenizer.json (see the top of "
      "tools/tokenize_cli.cc).\nUsage: prefixd-tokenize --tokenizer PATH < requests.jsonl");
  absl::ParseCommandLine(argc, argv);
  const std::string path = absl::GetFlag(FLAGS_tokenizer);
  if (path.empty()) {
    std::fprintf(stderr, "prefixd-tokenize: --tokenizer PATH is required (see --help)\n");
    return 2;
  }
  auto tokenizer = prefixd::Tokenizer::FromFile(path);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "prefixd-tokenize: %s\n", tokenizer.status().ToString().c_str());
    return 1;
  }
  std::ios::sync_with_stdio(false);
  std::string line;
  while (std::getline(std::cin, line)) {
    nlohmann::json answer;
    try {
      answer = prefixd::Answer(**tokenizer, nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception& e) {
      answer = {{"error", e.what()}};
    }
    std::cout << answer.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n'
              << std::flush;
  }
  return 0;
}
