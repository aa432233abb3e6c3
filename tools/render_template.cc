// tools/render_template.cc — render-template: renders Jinja chat templates with
// tokenizer/jinja, for the differential test against Python's jinja2
// (tests/tokenizer/jinja_differential_test.py) and for debugging a template by hand.
//
//   render-template < cases.jsonl                 one JSON line in, one JSON line out
//   render-template --template=t.jinja --variables=v.json [--now=2026-01-15T12:00:00]
//
// Each input line is {"template": "...", "variables": {...}, "now": "YYYY-MM-DDTHH:MM:SS"}
// ("variables" and "now" optional); each output line is {"output": "..."} or
// {"error_kind": "<ErrorKind(status)>", "message": "..."}. strftime_now(fmt) formats the
// frozen "now" as Python's datetime.strftime does in the C locale; without "now" it reads
// the clock.
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "tokenizer/jinja/template.h"

namespace prefixd {
namespace {

using Json = nlohmann::ordered_json;

constexpr char kUsage[] =
    R"(render-template: render Jinja2 chat templates with prefixd's interpreter.

  render-template < cases.jsonl
      Reads one JSON object per line:
        {"template": "...", "variables": {...}, "now": "2026-01-15T12:00:00"}
      and writes one JSON line per case, flushed:
        {"output": "..."}  or  {"error_kind": "TemplateSyntaxError", "message": "..."}
      "variables" defaults to {}; "now" freezes strftime_now (default: the clock).

  render-template --template=FILE [--variables=FILE] [--now=YYYY-MM-DDTHH:MM:SS]
      Renders one template with the variables in a JSON file and prints the raw output;
      on an error prints "<kind>: <message>" to stderr and exits 1.

The globals are transformers': raise_exception, strftime_now, namespace, range; tojson
as json.dumps(ensure_ascii=False); trim_blocks, lstrip_blocks and loopcontrols on.
)";

// "YYYY-MM-DDTHH:MM:SS" (a space for 'T' and a fractional part are accepted) as a broken-
// down time with the weekday and day of the year filled in, as datetime.timetuple() has.
std::optional<std::tm> ParseIsoTime(std::string_view iso, int* microseconds) {
  std::tm tm{};
  int year, month, day, hour = 0, minute = 0, second = 0, consumed = 0;
  std::string text(iso);
  if (std::sscanf(text.c_str(), "%4d-%2d-%2d%n", &year, &month, &day, &consumed) != 3) {
    return std::nullopt;
  }
  *microseconds = 0;
  if (static_cast<size_t>(consumed) < text.size()) {
    const char* rest = text.c_str() + consumed;
    if (*rest != 'T' && *rest != ' ') return std::nullopt;
    int more = 0;
    if (std::sscanf(rest + 1, "%2d:%2d:%2d%n", &hour, &minute, &second, &more) != 3) {
      return std::nullopt;
    }
    rest += 1 + more;
    if (*rest == '.') {
      int digits = 0, value = 0;
      for (++rest; *rest >= '0' && *rest <= '9'; ++rest, ++digits) {
        if (digits < 6) value = value * 10 + (*rest - '0');
      }
      for (; digits < 6; ++digits) value *= 10;
      *microseconds = value;
    }
    if (*rest != '\0') return std::nullopt;
  }
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  // timegm normalizes and fills tm_wday / tm_yday; the fields must survive unchanged.
  std::tm check = tm;
  const time_t t = timegm(&check);
  std::tm out{};
  gmtime_r(&t, &out);
  if (out.tm_year != tm.tm_year || out.tm_mon != tm.tm_mon || out.tm_mday != tm.tm_mday ||
      out.tm_hour != hour || out.tm_min != minute || out.tm_sec != second) {
    return std::nullopt;
  }
  out.tm_isdst = -1;  // as Python's timetuple() of a naive datetime
  return out;
}

// datetime.strftime on a naive datetime: %f, %z and %Z are Python's own (%z and %Z are
// empty without a time zone); everything else is the C library's strftime, C locale.
std::string PyStrftime(const std::tm& tm, int microseconds, std::string_view format) {
  std::string c_format;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      c_format += format[i];
      continue;
    }
    if (i + 1 == format.size()) {
      c_format += '%';
      break;
    }
    const char ch = format[++i];
    if (ch == 'f') {
      char digits[8];
      std::snprintf(digits, sizeof digits, "%06d", microseconds);
      c_format += digits;
    } else if (ch == 'z' || ch == 'Z') {
      // naive: no offset, no zone name
    } else {
      c_format += '%';
      c_format += ch;
    }
  }
  if (c_format.empty()) return "";
  // As CPython's time.strftime: grow the buffer until something is written, up to 256
  // bytes per format byte (an empty result is then taken as genuinely empty).
  for (size_t size = 1024;; size *= 2) {
    std::string buffer(size, '\0');
    const size_t n = std::strftime(buffer.data(), buffer.size(), c_format.c_str(), &tm);
    if (n > 0 || size >= 256 * c_format.size()) {
      buffer.resize(n);
      return buffer;
    }
  }
}

struct Outcome {
  std::optional<std::string> output;
  std::string error_kind;
  std::string message;
};

Outcome RenderOne(const std::string& source, const Json& variables,
                  const std::optional<std::string>& now) {
  Outcome outcome;
  jinja::RenderOptions options;
  if (now.has_value()) {
    int microseconds = 0;
    std::optional<std::tm> tm = ParseIsoTime(*now, &microseconds);
    if (!tm.has_value()) {
      outcome.error_kind = "InputError";
      outcome.message = "\"now\" is not YYYY-MM-DDTHH:MM:SS: " + *now;
      return outcome;
    }
    options.strftime_now = [tm = *tm, microseconds](std::string_view format) {
      return PyStrftime(tm, microseconds, format);
    };
  }
  try {
    absl::StatusOr<jinja::Template> parsed = jinja::Template::Parse(source);
    if (!parsed.ok()) {
      outcome.error_kind = jinja::ErrorKind(parsed.status());
      outcome.message = std::string(parsed.status().message());
      return outcome;
    }
    absl::StatusOr<std::string> rendered = parsed->Render(variables, options);
    if (!rendered.ok()) {
      outcome.error_kind = jinja::ErrorKind(rendered.status());
      if (outcome.error_kind.empty()) {
        outcome.error_kind = std::string(absl::StatusCodeToString(rendered.status().code()));
      }
      outcome.message = std::string(rendered.status().message());
      return outcome;
    }
    outcome.output = *std::move(rendered);
  } catch (const std::exception& e) {
    // The interpreter promises Status errors; an escaped exception is a bug to report.
    outcome.error_kind = "CppException";
    outcome.message = e.what();
  }
  return outcome;
}

int RunJsonLines() {
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    Json reply = Json::object();
    Json request = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (request.is_discarded() || !request.is_object() || !request.contains("template") ||
        !request["template"].is_string()) {
      reply["error_kind"] = "InputError";
      reply["message"] = "each line must be a JSON object with a string \"template\"";
    } else {
      Json variables = request.value("variables", Json::object());
      std::optional<std::string> now;
      if (request.contains("now") && request["now"].is_string())
        now = request["now"].get<std::string>();
      Outcome outcome = RenderOne(request["template"].get<std::string>(), variables, now);
      if (outcome.output.has_value()) {
        reply["output"] = *outcome.output;
      } else {
        reply["error_kind"] = outcome.error_kind;
        reply["message"] = outcome.message;
      }
    }
    // Invalid UTF-8 in an output is itself a mismatch: it shows as U+FFFD, not a throw.
    std::cout << reply.dump(-1, ' ', false, Json::error_handler_t::replace) << '\n' << std::flush;
  }
  return 0;
}

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

int RunOneShot(const std::string& template_path, const std::string& variables_path,
               const std::optional<std::string>& now) {
  std::optional<std::string> source = ReadFile(template_path);
  if (!source.has_value()) {
    std::cerr << "render-template: cannot read " << template_path << "\n";
    return 2;
  }
  Json variables = Json::object();
  if (!variables_path.empty()) {
    std::optional<std::string> text = ReadFile(variables_path);
    if (!text.has_value()) {
      std::cerr << "render-template: cannot read " << variables_path << "\n";
      return 2;
    }
    variables = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (variables.is_discarded() || !variables.is_object()) {
      std::cerr << "render-template: " << variables_path << " is not a JSON object\n";
      return 2;
    }
  }
  Outcome outcome = RenderOne(*source, variables, now);
  if (!outcome.output.has_value()) {
    std::cerr << outcome.error_kind << ": " << outcome.message << "\n";
    return 1;
  }
  std::cout << *outcome.output << std::flush;
  return 0;
}

}  // namespace
}  // namespace prefixd

int main(int argc, char** argv) {
  std::string template_path, variables_path;
  std::optional<std::string> now;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value_of = [&](std::string_view flag) -> std::optional<std::string> {
      if (arg.substr(0, flag.size()) == flag && arg.size() > flag.size() &&
          arg[flag.size()] == '=') {
        return std::string(arg.substr(flag.size() + 1));
      }
      return std::nullopt;
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << prefixd::kUsage;
      return 0;
    } else if (auto v = value_of("--template")) {
      template_path = *v;
    } else if (auto v = value_of("--variables")) {
      variables_path = *v;
    } else if (auto v = value_of("--now")) {
      now = *v;
    } else {
      std::cerr << "render-template: unknown argument " << arg << "\n\n" << prefixd::kUsage;
      return 2;
    }
  }
  if (template_path.empty()) {
    if (!variables_path.empty()) {
      std::cerr << "render-template: --variables needs --template\n";
      return 2;
    }
    return prefixd::RunJsonLines();
  }
  return prefixd::RunOneShot(template_path, variables_path, now);
}
