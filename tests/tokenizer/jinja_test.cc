// tokenizer/jinja: templates rendered as Python's jinja2 3.1 renders them under
// transformers' settings. Expected strings were produced with jinja2 (make_expected.py's
// environment).
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tokenizer/jinja/template.h"

namespace prefixd::jinja {
namespace {

using Json = nlohmann::ordered_json;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// The variables most tests use.
const Json& Vars() {
  static const Json* vars = new Json(Json::parse(R"({
    "xs": [1, 2, 3],
    "d": {"a": 1, "b": [true, null, "x"]},
    "s": "Hello World",
    "n": null,
    "f": 2.5,
    "e": "",
    "t": true,
    "u8": "héllo wörld ✓",
    "msgs": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
             {"role": "assistant", "content": "yo"}]
  })"));
  return *vars;
}

absl::StatusOr<std::string> Render(std::string_view source, const Json& vars = Vars(),
                                   const RenderOptions& options = {}) {
  absl::StatusOr<Template> t = Template::Parse(source);
  if (!t.ok()) return t.status();
  return t->Render(vars, options);
}

// The rendered text, or the error as "<Kind>: <message>".
std::string R(std::string_view source, const Json& vars = Vars()) {
  absl::StatusOr<std::string> out = Render(source, vars);
  if (out.ok()) return *out;
  return ErrorKind(out.status()) + ": " + std::string(out.status().message());
}

TEST(JinjaTest, PrintsValuesAsPythonStrDoes) {
  EXPECT_EQ(R("{{ d }}|{{ xs }}|{{ s }}|{{ n }}|{{ f }}|{{ t }}|{{ u }}|"),
            "{'a': 1, 'b': [True, None, 'x']}|[1, 2, 3]|Hello World|None|2.5|True||");
  EXPECT_EQ(R("{{ (1,) }}{{ (1, 2) }}{{ () }}{{ 1, 2 }}"), "(1,)(1, 2)()(1, 2)");
  EXPECT_EQ(R("{{ 1e16 }} {{ 1.5e-5 }} {{ 0.1 + 0.2 }} {{ 1/3 }} {{ 1e-4 }} {{ 1.0 }} {{ 100.0 }}"
              " {{ 1e15 }} {{ -0.0 }} {{ 7 / 7 }} {{ 1e308 * 10 }}"),
            "1e+16 1.5e-05 0.30000000000000004 0.3333333333333333 0.0001 1.0 100.0 "
            "1000000000000000.0 -0.0 1.0 inf");
  EXPECT_EQ(R(R"({{ ["it's", 'say "hi"', "both ' \"", "a\nb\tc\\", "\x01\x7f"] }})"),
            R"(["it's", 'say "hi"', 'both \' "', 'a\nb\tc\\', '\x01\x7f'])");
  EXPECT_EQ(R(R"({{ ["é", "\u2028", "\xa0", "\u200b", "日本"] }})"),
            R"(['é', '\u2028', '\xa0', '\u200b', '日本'])");
  EXPECT_EQ(R("{{ d.items() }} {{ d.keys() }} {{ d.values() }}"),
            "dict_items([('a', 1), ('b', [True, None, 'x'])]) dict_keys(['a', 'b']) "
            "dict_values([1, [True, None, 'x']])");
  EXPECT_EQ(R("{% set ns = namespace(a=1) %}{{ ns }}"), "<Namespace {'a': 1}>");
}

TEST(JinjaTest, Tojson) {
  EXPECT_EQ(R("{{ d|tojson }}"), R"({"a": 1, "b": [true, null, "x"]})");
  EXPECT_EQ(R("{{ d|tojson(indent=2) }}"),
            "{\n  \"a\": 1,\n  \"b\": [\n    true,\n    null,\n    \"x\"\n  ]\n}");
  EXPECT_EQ(R("{{ xs|tojson(indent=0) }}|{{ {}|tojson(indent=2) }}|{{ []|tojson }}"),
            "[\n1,\n2,\n3\n]|{}|[]");
  EXPECT_EQ(R(R"({{ {"b": 1, "a": [1.0, 2]}|tojson(sort_keys=true) }})"),
            R"({"a": [1.0, 2], "b": 1})");
  EXPECT_EQ(R(R"({{ d|tojson(separators=(",", ":")) }})"), R"({"a":1,"b":[true,null,"x"]})");
  EXPECT_EQ(R("{{ u8|tojson }} {{ u8|tojson(true) }}"),
            R"("héllo wörld ✓" "h\u00e9llo w\u00f6rld \u2713")");
  EXPECT_EQ(R(R"({{ "q\"\\\n\x1f\x7f"|tojson }} {{ {1: 2, none: 3, true: 4, 1.5: 5}|tojson }})"),
            "\"q\\\"\\\\\\n\\u001f\x7f\" {\"1\": 4, \"null\": 3, \"1.5\": 5}");  // 1 == True
  EXPECT_EQ(R("{{ (1e308 * 10)|tojson }} {{ (1, 2)|tojson }}"), "Infinity [1, 2]");
  EXPECT_EQ(R("{{ u|tojson }}"),
            "TypeError: line 1: Object of type Undefined is not JSON serializable");
}

TEST(JinjaTest, StringsAreCodePoints) {
  EXPECT_EQ(R("{{ u8|length }} {{ u8[1] }} {{ u8[-1] }} {{ u8[1:4] }} {{ u8[::-1] }}"),
            "13 é ✓ éll ✓ dlröw olléh");
  EXPECT_EQ(R("{{ \"日本語\"|reverse }} {{ \"日本語\"|list }} {{ \"a日b\".find(\"b\") }}"),
            "語本日 ['日', '本', '語'] 2");
  EXPECT_EQ(
      R("{{ xs[::-1] }} {{ xs[1:] }} {{ xs[:-1] }} {{ xs[::2] }} {{ s[2:100] }} {{ xs[-9:2] }}"),
      "[3, 2, 1] [2, 3] [1, 2] [1, 3] llo World [1, 2]");
  EXPECT_EQ(R("{{ xs[10] }}|{{ s[100] }}|{{ xs.0 }}|{{ msgs.1.role }}"), "||1|user");
}

TEST(JinjaTest, Arithmetic) {
  EXPECT_EQ(R("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ -7 % 3 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }}"),
            "3 -4 -2 2 3.0 0.5");
  EXPECT_EQ(
      R("{{ 2 ** 10 }} {{ 2 ** -1 }} {{ 10 / 4 }} {{ 3 * 'ab' }} {{ 'ab' * 0 }} {{ [1] * 3 }}"),
      "1024 0.5 2.5 ababab  [1, 1, 1]");
  EXPECT_EQ(
      R("{{ -(2 ** 2) }} {{ -2 ** 2 }} {{ 2 ** 3 ** 2 }} {{ 1 + 2 * 3 - 4 / 2 }} {{ 10 - 2 - 3 }}"),
      "-4 4 64 5.0 5");
  EXPECT_EQ(
      R("{{ 'a' ~ 1 * 2 }} {{ [1, 2] + [3] }} {{ 'a' + 'b' }} {{ (1,) + (2,) }} {{ true + true }}"),
      "a2 [1, 2, 3] ab (1, 2) 2");
  // ~ binds tighter than + in jinja2: ('a' ~ 1) + 2.
  EXPECT_EQ(R("{{ 'a' ~ 1 + 2 }}"),
            "TypeError: line 1: can only concatenate str (not \"int\") to str");
  EXPECT_EQ(R("{{ 0x10 }} {{ 0o10 }} {{ 0b10 }} {{ 1_000 }} {{ 1.5e3 }} {{ 1E2 }}"),
            "16 8 2 1000 1500.0 100.0");
  EXPECT_EQ(R("{{ 'a' + 1 }}"), "TypeError: line 1: can only concatenate str (not \"int\") to str");
  EXPECT_EQ(R("{{ n + 1 }}"),
            "TypeError: line 1: unsupported operand type(s) for +: 'NoneType' and 'int'");
  EXPECT_EQ(R("{{ 1 / 0 }}"), "ZeroDivisionError: line 1: division by zero");
  EXPECT_EQ(R("{{ 1 < 'a' }}"),
            "TypeError: line 1: '<' not supported between instances of 'int' and 'str'");
}

TEST(JinjaTest, ComparisonsAndLogic) {
  EXPECT_EQ(R("{{ 1 == 1.0 }} {{ [1, 2] == [1, 2] }} {{ (1, 2) == [1, 2] }} {{ true == 1 }}"
              " {{ d == {'b': [true, none, 'x'], 'a': 1} }} {{ [1, 2] < [1, 3] }}"),
            "True True False True True True");
  EXPECT_EQ(R("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 in xs }} {{ 'a' in d }} {{ 'ell' in s }}"
              " {{ 5 not in xs }}"),
            "True False True True True True");
  EXPECT_EQ(
      R("{{ t and 'yes' }} {{ n or 'dflt' }} {{ not t }} {{ 'a' if n else 'b' }} {{ 'a' if n }}|"),
      "yes dflt False b |");
  EXPECT_EQ(R("{{ 1 in s }}"),
            "TypeError: line 1: 'in <string>' requires string as left operand, not int");
}

TEST(JinjaTest, UndefinedFollowsJinja2) {
  EXPECT_EQ(R("{{ u }}|{{ u ~ 'x' ~ 1 ~ none }}|{{ u == u }}|{{ u is defined }}|{{ u|length }}"
              "|{{ u|list }}|{% for x in u %}x{% endfor %}|{{ u|default('dflt') }}|{{ u|trim }}"),
            "|x1None|True|False|0|[]||dflt|");
  EXPECT_EQ(R("{{ d.x }}|{{ d.x is defined }}|{{ d['a'] }}|{{ xs[5] is defined }}"),
            "|False|1|False");
  EXPECT_EQ(R("{{ u.x }}"), "UndefinedError: line 1: 'u' is undefined");
  EXPECT_EQ(R("{{ u + 1 }}"), "UndefinedError: line 1: 'u' is undefined");
  EXPECT_EQ(R("{{ u() }}"), "UndefinedError: line 1: 'u' is undefined");
  EXPECT_EQ(R("{{ d.x.y }}"), "UndefinedError: line 1: 'dict object' has no attribute 'x'");
  EXPECT_EQ(R("{{ xs[5].x }}"), "UndefinedError: line 1: list object has no element 5");
  EXPECT_EQ(R("{{ none.x }}|{{ (none.x) is defined }}"), "|False");
  EXPECT_EQ(R("{% if u %}yes{% elif n %}n{% elif xs %}xs{% else %}else{% endif %}"), "xs");
}

TEST(JinjaTest, SandboxForbidsMutation) {
  EXPECT_EQ(R("{{ xs.append }}|"), "|");
  EXPECT_EQ(R("{{ xs.append(4) }}"),
            "SecurityError: line 1: access to attribute 'append' of 'list' object is unsafe.");
  EXPECT_EQ(R("{{ d.update({}) }}"),
            "SecurityError: line 1: access to attribute 'update' of 'dict' object is unsafe.");
}

TEST(JinjaTest, StringMethods) {
  EXPECT_EQ(
      R("{{ s.upper() }} {{ s.lower() }} {{ s.split() }} {{ s.split('o') }} {{ s.split('o', 1) }}"),
      "HELLO WORLD hello world ['Hello', 'World'] ['Hell', ' W', 'rld'] ['Hell', ' World']");
  EXPECT_EQ(R("{{ '  a  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '  a '.lstrip() }}|{{ ' a  "
              "'.rstrip() }}|"),
            "a|a|a | a|");
  EXPECT_EQ(R("{{ s.startswith('He') }} {{ s.endswith(('x', 'ld')) }} {{ s.replace('l', 'L', 1) }}"
              " {{ s.find('o') }} {{ s.find('z') }} {{ s.count('l') }} {{ '-'.join(['a', 'b']) }}"),
            "True True HeLlo World 4 -1 3 a-b");
  EXPECT_EQ(R("{{ s.title() }} {{ 'hello world'.capitalize() }} {{ 'a,b,,c'.split(',') }}"
              " {{ 'a b c'.split(none, 1) }} {{ 'a,b,c'.rsplit(',', 1) }}"),
            "Hello World Hello world ['a', 'b', '', 'c'] ['a', 'b c'] ['a,b', 'c']");
  EXPECT_EQ(R("{{ '{} and {}'.format(1, 'x') }} {{ '{0}{0}{name}'.format('a', name='b') }}"
              " {{ '{:>5}|{:<5}|{:^5}|{:05.1f}|{:,}'.format('a', 'b', 'c', 3.14159, 1234567) }}"),
            "1 and x aab     a|b    |  c  |003.1|1,234,567");
  EXPECT_EQ(R("{{ '%s=%d' % ('a', 3) }} {{ '%.2f'|format(3.14159) }} {{ '%(a)s' % {'a': 1} }}"
              " {{ '%5s|%-5s|%05d|%+d|%x' % ('a', 'b', 42, 3, 255) }}"),
            "a=3 3.14 1     a|b    |00042|+3|ff");
  EXPECT_EQ(R("{{ 'ß'.upper() }} {{ 'ÀÉÎ'.lower() }} {{ 'ΑΒΓ'.lower() }} {{ 'привет'.upper() }}"),
            "SS àéî αβγ ПРИВЕТ");
}

TEST(JinjaTest, DictMethodsAndAttributeFallback) {
  EXPECT_EQ(R("{{ d.get('a') }} {{ d.get('z', 5) }} {{ d.get('z') }} {{ msgs[0].role }}"
              " {{ msgs[-1]['content'] }}"),
            "1 5 None system yo");
  EXPECT_EQ(R("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% "
              "endfor %}"),
            "a=1;b=[True, None, 'x'];ab");
  // A key named like a method: attribute access finds the method, as in Python.
  EXPECT_EQ(R("{{ m.items is defined }} {{ m['items'] }}", Json::parse(R"({"m": {"items": 7}})")),
            "True 7");
}

TEST(JinjaTest, Filters) {
  EXPECT_EQ(R("{{ xs|join(',') }} {{ xs|join }} {{ msgs|map(attribute='role')|join(', ') }}"),
            "1,2,3 123 system, user, assistant");
  EXPECT_EQ(R("{{ msgs|selectattr('role', 'equalto', 'user')|list }}"
              " {{ msgs|rejectattr('role', 'equalto', 'user')|map(attribute='content')|list }}"),
            "[{'role': 'user', 'content': 'hi'}] ['sys', 'yo']");
  EXPECT_EQ(
      R("{{ xs|select('odd')|list }} {{ xs|reject('odd')|list }} {{ [0, 1, '', 'a']|select|list }}"
        " {{ ['a', 'B']|map('upper')|list }} {{ msgs|selectattr('content')|list|length }}"),
      "[1, 3] [2] [1, 'a'] ['A', 'B'] 3");
  EXPECT_EQ(R("{{ xs|first }} {{ xs|last }} {{ []|first }}|{{ s|first }} {{ d|first }} {{ [3, 1, "
              "2]|sort }}"
              " {{ [3, 1, 2]|sort(reverse=true) }} {{ ['b', 'A', 'a']|sort }}"
              " {{ ['b', 'A', 'a']|sort(case_sensitive=true) }}"),
            "1 3 |H a [1, 2, 3] [3, 2, 1] ['A', 'a', 'b'] ['A', 'a', 'b']");
  EXPECT_EQ(R("{{ msgs|sort(attribute='role')|map(attribute='role')|list }} {{ [1, 2, 1, "
              "3]|unique|list }}"
              " {{ ['a', 'A']|unique|list }} {{ xs|sum }} {{ xs|min }} {{ xs|max }} {{ "
              "xs|reverse|list }}"),
            "['assistant', 'system', 'user'] [1, 2, 3] ['a'] 6 1 3 [3, 2, 1]");
  EXPECT_EQ(R("{{ 3.7|int }} {{ '42'|int }} {{ '4.7'|int }} {{ 'x'|int }} {{ 'x'|int(5) }} {{ "
              "'3'|float }}"
              " {{ -3|abs }} {{ 2.5|round }} {{ 3.14159|round(2) }} {{ 3.5|round(0, 'floor') }} {{ "
              "3|round }}"),
            "3 42 4 0 5 3.0 3 2.0 3.14 3.0 3");
  EXPECT_EQ(
      R("{{ s|lower }} {{ '  x  '|trim }}|{{ 5|string }} {{ none|string }} {{ s|replace('o', '0') "
        "}}"
        " {{ s|wordcount }} {{ 'ab'|center(6) }}| {{ 'ab-cd ef'|title }} {{ 'hELLO'|capitalize }}"),
      "hello world x|5 None Hell0 W0rld 2   ab  | Ab-Cd Ef Hello");
  EXPECT_EQ(
      R("{{ e|default('dflt') }}|{{ e|default('dflt', true) }} {{ n|d('x') }} {{ d|items|list }}"
        " {{ d|dictsort }} {{ s|list|length }} {{ '<a&\\'\">'|e }}"),
      "|dflt None [('a', 1), ('b', [True, None, 'x'])] [('a', 1), ('b', [True, None, 'x'])] 11"
      " &lt;a&amp;&#39;&#34;&gt;");
  EXPECT_EQ(R("{{ xs|batch(2)|list }} {{ xs|batch(2, 0)|list }} {{ [[1], [2]]|sum(start=[]) }}"
              " {{ msgs|map(attribute='missing', default='d')|list }}"),
            "[[1, 2], [3]] [[1, 2], [3, 0]] [1, 2] ['d', 'd', 'd']");
  EXPECT_EQ(R("{{ 'hello world foo bar baz qux'|truncate(12) }} {{ xs|pprint }} {{ "
              "range(3)|map('string')|join }}"),
            "hello... [1, 2, 3] 012");
}

TEST(JinjaTest, FilterResultsAreGeneratorsLikePython) {
  EXPECT_EQ(R("{{ xs|selectattr('x')|length }}"),
            "TypeError: line 1: object of type 'generator' has no len()");
  EXPECT_EQ(R("{% if []|select %}truthy{% endif %}"), "truthy");
}

TEST(JinjaTest, IndentFollowsJinja31) {
  EXPECT_EQ(R("{{ 'a\\nb\\nc'|indent }}|{{ 'a\\nb\\n\\nc'|indent(2, true) }}|"
              "{{ 'a\\n\\nb'|indent(2, blank=true) }}|{{ 'a\\nb'|indent('> ') }}"),
            "a\n    b\n    c|  a\n  b\n\n  c|a\n  \n  b|a\n> b");
}

TEST(JinjaTest, Tests) {
  EXPECT_EQ(R("{{ xs is iterable }} {{ 1 is iterable }} {{ u is iterable }} {{ d is mapping }}"
              " {{ xs is sequence }} {{ t is number }} {{ t is boolean }} {{ 1 is integer }}"
              " {{ t is integer }} {{ 1.0 is float }} {{ s is string }}"),
            "True False True True True True True True False True True");
  EXPECT_EQ(
      R("{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }}"
        " {{ 'ab' is lower }} {{ 'AB' is upper }} {{ 1 is eq 1 }} {{ 1 is ne 2 }} {{ 2 is gt 1 }}"
        " {{ 1 is in xs }} {{ range is callable }} {{ t is true }} {{ n is false }} {{ n is none "
        "}}"),
      "True True True False True True True True True True True True False True");
  EXPECT_EQ(R("{{ msgs|selectattr('role', 'in', ['user', "
              "'system'])|map(attribute='content')|join('/') }}"),
            "sys/hi");
}

TEST(JinjaTest, ForLoops) {
  EXPECT_EQ(
      R("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
        "{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.cycle('a', 'b') }}|{% endfor %}"),
      "1032TrueFalse3a|2121FalseFalse3b|3210FalseTrue3a|");
  EXPECT_EQ(R("{% for x in xs %}{{ loop.previtem }}-{{ loop.nextitem }},{% endfor %}"),
            "-2,1-3,2-,");
  EXPECT_EQ(R("{% for x in xs if x > 1 %}{{ x }}{{ loop.index }}{{ loop.length }}{% else %}none{% "
              "endfor %}"
              "{% for x in [] %}{% else %}empty{% endfor %}"),
            "212322empty");
  EXPECT_EQ(R("{% for x in xs %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 3 %}{% break %}"
              "{% endif %}{{ x }}{% endfor %}"),
            "1");
  EXPECT_EQ(R("{% for x in xs %}{% for y in xs %}{{ loop.index }}{% endfor %}{{ loop.index }};{% "
              "endfor %}"),
            "1231;1232;1233;");
  EXPECT_EQ(R("{% for a, b in [(1, 2), (3,)] %}{{ a }}{% endfor %}"),
            "ValueError: line 1: not enough values to unpack (expected 2, got 1)");
  EXPECT_EQ(R("{% for x in 5 %}{% endfor %}"), "TypeError: line 1: 'int' object is not iterable");
}

TEST(JinjaTest, Scoping) {
  // A set inside a loop stays in that iteration; namespaces carry state out.
  EXPECT_EQ(R("{% set c = 0 %}{% for x in xs %}{% set c = c + x %}{{ c }}{% endfor %}{{ c }}"),
            "1230");
  EXPECT_EQ(
      R("{% for i in range(3) %}{% if i == 0 %}{% set c = 5 %}{% endif %}{{ c }},{% endfor %}"),
      "5,,,");
  EXPECT_EQ(R("{% set ns = namespace(c=0) %}{% for x in xs %}{% set ns.c = ns.c + x %}{% endfor "
              "%}{{ ns.c }}"),
            "6");
  EXPECT_EQ(
      R("{% set ns = namespace(items=[]) %}{% for x in xs %}{% set ns.items = ns.items + [x * 2] %}"
        "{% endfor %}{{ ns.items }}"),
      "[2, 4, 6]");
  EXPECT_EQ(R("{% set x = 5 %}{% if true %}{% set x = 6 %}{% endif %}{{ x }}"), "6");
  EXPECT_EQ(R("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set x %}block {{ a }}{% endset %}{{ x }}"),
            "12block 1");
  EXPECT_EQ(R("{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}{{ a }}"), "3");
  EXPECT_EQ(R("{% set n.x = 1 %}"),
            "TemplateRuntimeError: line 1: cannot assign attribute on non-namespace object");
}

TEST(JinjaTest, Macros) {
  EXPECT_EQ(R("{% macro m(a, b=2, c='x') %}{{ a }}{{ b }}{{ c }}{% endmacro %}"
              "{{ m(1) }} {{ m(1, 3) }} {{ m(1, c=4) }} {{ m(a=5) }} {{ m() }}"),
            "12x 13x 124 52x 2x");
  EXPECT_EQ(
      R("{% macro r(n) %}{% if n > 0 %}{{ n }}{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(5) }}"),
      "54321");
  EXPECT_EQ(
      R("{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k=4) }}"),
      "1(2, 3){'k': 4}");
  EXPECT_EQ(R("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}"),
            "TypeError: line 1: macro 'm' takes not more than 1 argument(s)");
  EXPECT_EQ(R("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, b=2) }}"),
            "TypeError: line 1: macro 'm' takes no keyword argument 'b'");
  EXPECT_EQ(R("{% set x = 1 %}{% macro m() %}{{ x }}{% endmacro %}{% set x = 2 %}{{ m() }}"), "2");
  EXPECT_EQ(R("{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}inner{% endcall %}"),
            "<inner>");
  EXPECT_EQ(R("{% filter upper %}hello {{ s }}{% endfilter %}"), "HELLO HELLO WORLD");
}

TEST(JinjaTest, Globals) {
  EXPECT_EQ(R("{{ range(3)|list }} {{ range(1, 10, 3)|list }} {{ range(5, 0, -2)|list }}"),
            "[0, 1, 2] [1, 4, 7] [5, 3, 1]");
  EXPECT_EQ(R("{{ dict(a=1, b=2) }} {{ namespace(a=1).a }} {{ {'a': 1, 'a': 2} }}"),
            "{'a': 1, 'b': 2} 1 {'a': 2}");
  EXPECT_EQ(R("{{ range(200000) }}"),
            "OverflowError: line 1: Range too big. The sandbox blocks ranges larger than MAX_RANGE "
            "(100000).");
  RenderOptions options;
  options.strftime_now = [](std::string_view format) { return "[" + std::string(format) + "]"; };
  EXPECT_EQ(*Render("{{ strftime_now('%d %b %Y') }}", Vars(), options), "[%d %b %Y]");
}

TEST(JinjaTest, RaiseExceptionIsTheTemplatesMessage) {
  absl::StatusOr<std::string> out =
      Render("line one\n{{ raise_exception('Roles must alternate') }}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out.status().message(), "Roles must alternate");
  EXPECT_EQ(ErrorKind(out.status()), "TemplateError");
}

TEST(JinjaTest, WhitespaceControl) {
  EXPECT_EQ(R("a\n  {% if true %}\n  b\n  {% endif %}\nc"), "a\n  b\nc");
  EXPECT_EQ(R("a\n  {% if true -%}\n  b\n  {%- endif %}\nc"), "a\nbc");
  EXPECT_EQ(R("  {{ 1 }}\n  {% set x = 1 %}\n{{ x }}"), "  1\n1");  // lstrip not before {{
  EXPECT_EQ(R("line\n    {#- comment #}\nnext"), "linenext");
  EXPECT_EQ(R("{% if true %}\n\nx{% endif %}"), "\nx");  // trim_blocks: one newline
  EXPECT_EQ(R("{% if true +%}\nx{% endif %}"), "\nx");
  EXPECT_EQ(R("x {%+ if true %} y {% endif %}"), "x  y ");
  EXPECT_EQ(R("{{ 1 -}}\n\n{{- 2 }}"), "12");
  EXPECT_EQ(R("x\n"), "x");  // keep_trailing_newline=False
  EXPECT_EQ(R("a\r\nb\r\n{% if true %}\r\nc{% endif %}\r\n"), "a\nb\nc");
  EXPECT_EQ(R("  {% raw %}\n{{x}}\n  {%- endraw %}\nq"), "\n{{x}}q");
  EXPECT_EQ(R("a {{ '{{' }} b {{ '%}' }} c {% set x = '%}' %}{{ x }} {{ {'a': {'b': 1}} }}"),
            "a {{ b %} c %} {'a': {'b': 1}}");
  EXPECT_EQ(R("{%- for m in msgs %}\n{{- m.role + ': ' + m.content }}\n{%- if not loop.last %}\n\n"
              "{%- endif %}\n{%- endfor %}"),
            "system: sysuser: hiassistant: yo");
  EXPECT_EQ(R("{% generation %}gen {{ s }}{% endgeneration %}"), "gen Hello World");
}

TEST(JinjaTest, SyntaxErrorsHaveLineAndColumn) {
  absl::StatusOr<Template> t = Template::Parse("ok\n{% if x %}\n{{ 1 + }}\n{% endif %}");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(ErrorKind(t.status()), "TemplateSyntaxError");
  EXPECT_EQ(t.status().message(), "line 3, column 8: unexpected 'end of print statement'");
  auto message = [](std::string_view source) {
    absl::StatusOr<Template> parsed = Template::Parse(source);
    EXPECT_FALSE(parsed.ok()) << source;
    EXPECT_EQ(ErrorKind(parsed.status()), "TemplateSyntaxError") << source;
    return std::string(parsed.status().message());
  };
  EXPECT_THAT(message("{% if x %}"), HasSubstr("Unexpected end of template"));
  EXPECT_THAT(message("{{ x | nosuchfilter }}"), HasSubstr("No filter named 'nosuchfilter'."));
  EXPECT_THAT(message("{{ x is nosuchtest }}"), HasSubstr("No test named 'nosuchtest'."));
  EXPECT_THAT(message("{% nosuchtag %}"), HasSubstr("Encountered unknown tag 'nosuchtag'."));
  EXPECT_THAT(message("{{ \"unterminated }}"), HasSubstr("unexpected char '\"' at 3"));
  EXPECT_THAT(message("{% break %}"), HasSubstr("'break' outside loop"));
  EXPECT_THAT(message("{% set x = 'it's' %}"),
              HasSubstr("expected token 'end of statement block', got 's'"));
  EXPECT_THAT(message("{{ (1 }}"), HasSubstr("unexpected '}', expected ')'"));
}

TEST(JinjaTest, RuntimeErrorsHaveTheLine) {
  absl::StatusOr<std::string> out = Render("a\nb\n{{ 1 + 'x' }}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(out.status().message()), StartsWith("line 3: "));
}

TEST(JinjaTest, DeepNestingIsASyntaxErrorNotACrash) {
  std::string deep(100000, '(');
  EXPECT_EQ(ErrorKind(Template::Parse("{{ " + deep + " }}").status()), "TemplateSyntaxError");
  std::string nots;
  for (int i = 0; i < 100000; ++i) nots += "not ";
  EXPECT_EQ(ErrorKind(Template::Parse("{{ " + nots + "x }}").status()), "TemplateSyntaxError");
  std::string ifs;
  for (int i = 0; i < 10000; ++i) ifs += "{% if x %}";
  EXPECT_EQ(ErrorKind(Template::Parse(ifs).status()), "TemplateSyntaxError");
}

TEST(JinjaTest, LimitsAreResourceExhausted) {
  RenderOptions options;
  options.limits.max_steps = 10000;
  absl::StatusOr<std::string> out =
      Render("{% for i in range(100000) %}{{ i }}{% endfor %}", Vars(), options);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);

  options = {};
  options.limits.max_output_bytes = 1000;
  out = Render("{% for i in range(1000) %}xxxxxxxxxx{% endfor %}", Vars(), options);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
  out = Render("{{ 'x' * 100000 }}", Vars(), options);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);

  options = {};
  options.limits.max_call_depth = 50;
  out = Render("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", Vars(), options);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);

  // Unbounded recursion with the default limits stops cleanly too.
  out = Render("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}");
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);

  // Nesting built at run time is bounded.
  out = Render(
      "{% set ns = namespace(x=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}"
      "{% endfor %}{{ ns.x|length }}");
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(JinjaTest, DeepOperationsOnHugeValuesAreCharged) {
  // Each of these does O(size) work per step; without charging it they would run for hours.
  for (const char* source : {
           "{% set a = range(100000)|list %}{% set b = a + [] %}"
           "{% for i in range(100000) %}{{ a == b }}{% endfor %}",
           "{% set a = range(100000)|list %}{% for i in range(100000) %}{{ 99999 in a }}{% endfor "
           "%}",
           "{% set a = range(100000)|list %}{% for i in range(100000) %}{% set b = a[::1] %}"
           "{% endfor %}",
           "{% set a = range(100000)|list %}{{ [a] * 1000 }}",
           "{% set a = range(100000)|list %}{% for i in range(100000) %}{{ a|last }}{% endfor %}",
           "{% set s = 'x' * 1000000 %}{% for i in range(100000) %}{% set t = s + 'y' %}{% endfor "
           "%}",
       }) {
    RenderOptions options;
    options.limits.max_steps = 1'000'000;
    absl::StatusOr<std::string> out = Render(source, Vars(), options);
    EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted) << source;
  }
}

TEST(JinjaTest, RecursionUpToTheCallDepthLimitWorks) {
  // A recursive macro 250 calls deep (max_call_depth is 256) renders, inside nested
  // statements, without running into the stack guard.
  absl::StatusOr<std::string> out = Render(
      "{% macro r(n) %}{% if n > 0 %}{% for x in [n] %}{% if x is number %}{{ r(x - 1) }}"
      "{% endif %}{% endfor %}{% else %}bottom{% endif %}{% endmacro %}{{ r(250) }}");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "bottom");
}

TEST(JinjaTest, RendersOnManyThreadsAtOnce) {
  absl::StatusOr<Template> t = Template::Parse(
      "{% for m in msgs %}{{ m.role|upper }}: {{ m.content }}{% if not loop.last %}\n{% endif %}"
      "{% endfor %}{% set ns = namespace(n=0) %}{% for x in xs %}{% set ns.n = ns.n + x %}"
      "{% endfor %} {{ ns.n }} {{ d|tojson }}");
  ASSERT_TRUE(t.ok());
  const std::string expected = *t->Render(Vars());
  std::vector<std::thread> threads;
  std::atomic<int> mismatches = 0;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int k = 0; k < 200; ++k)
        if (*t->Render(Vars()) != expected) ++mismatches;
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(JinjaTest, TemplateIsReusableAndVariablesKeepTheirOrder) {
  absl::StatusOr<Template> t = Template::Parse("{% for k, v in m.items() %}{{ k }}{% endfor %}");
  ASSERT_TRUE(t.ok());
  Json vars = {{"m", Json::object()}};
  vars["m"]["z"] = 1;
  vars["m"]["a"] = 2;
  vars["m"]["m"] = 3;
  EXPECT_EQ(*t->Render(vars), "zam");
  EXPECT_EQ(*t->Render(vars), "zam");
  absl::StatusOr<std::string> missing = t->Render(Json::object());
  EXPECT_EQ(ErrorKind(missing.status()), "UndefinedError");
  EXPECT_EQ(missing.status().message(), "line 1: 'm' is undefined");
}

// Differential findings (jinja2 3.1.2 behaviour).
TEST(JinjaTest, ForElseRunsWhenNoIterationReachedTheEndOfTheBody) {
  EXPECT_EQ(R("{% for x in [1, 2] %}{{ x }}{% break %}{% else %}E{% endfor %}"), "1E");
  EXPECT_EQ(R("{% for x in [1] %}{% continue %}{% else %}E{% endfor %}"), "E");
  EXPECT_EQ(R("{% for x in [1, 2] %}{{ x }}{% continue %}{% else %}E{% endfor %}"), "12E");
  EXPECT_EQ(R("{% for x in [1, 2] %}{{ x }}{% if x == 2 %}{% break %}{% endif %}{% else %}E"
              "{% endfor %}"),
            "12");
  EXPECT_EQ(R("{% for x in [1, 2] %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% else %}E"
              "{% endfor %}"),
            "2");
  EXPECT_EQ(R("{% for x in [] %}{% else %}E{% endfor %}"), "E");
}

TEST(JinjaTest, FloatFloorDivAndModFollowCPythonDivmod) {
  EXPECT_EQ(R("{{ 0.5 // 0.1 }} {{ 1 // 0.1 }} {{ 100.0 // 0.1 }} {{ 1e16 // -3 }}"
              " {{ (1e16 // -3) % -3 }} {{ ((2.0 // 0.1) / 2) % 2 }} {{ 0.0 // -3 }}"
              " {{ -0.0 // 3 }} {{ -1 // 3.0 }} {{ 7.5 // 2 }} {{ -7.5 // 2 }}"),
            "4.0 9.0 999.0 -3333333333333335.0 -2.0 1.5 -0.0 -0.0 -1.0 3.0 -4.0");
}

TEST(JinjaTest, RoundFloorAndCeilHaveNoNegativeZero) {
  EXPECT_EQ(R("{{ -0.4|round(0, 'ceil') }} {{ -0.0|round(0, 'floor') }}"
              " {{ -0.04|round(1, 'ceil') }} {{ -0.0|round }} {{ -0.4|round }}"
              " {{ -1.5|round(0, 'floor') }}"),
            "0.0 0.0 0.0 -0.0 -0.0 -2.0");
}

TEST(JinjaTest, LowerUsesGreekFinalSigma) {
  EXPECT_EQ(
      R("{{ 'ΟΔΟΣ'|lower }} {{ 'ΣΑΣ ΟΔΟΣ'.lower() }} {{ 'AΣ B'|lower }} {{ 'Σ'|lower }}"
        " {{ 'ΟΔΟΣ'|title }} {{ 'ΟΔΟΣ'.title() }} {{ 'ΟΔΟΣ'|capitalize }}"
        " {{ 'ΟΔΟΣ'.casefold() }} {{ \"AΣ'B\"|lower }} {{ 'AΣ.'|lower }} {{ 'ΑΣ-ΟΣ'|title }}"),
      "οδος σας οδος aς b σ Οδος Οδος Οδος οδοσ aσ'b aς. Ασ-Οσ");
}

TEST(JinjaTest, LoopControlInsideSetAndFilterBlocksActsOnTheLoop) {
  EXPECT_EQ(R("{% for s in [1, 2] %}{% set v %}{% break %}{% endset %}l{% endfor %}"), "");
  EXPECT_EQ(R("{% for s in [1, 2] %}{% set v %}a{% continue %}{% endset %}[{{ v }}]{% endfor %}"),
            "");
  EXPECT_EQ(R("{% for s in [1, 2] %}{% filter upper %}a{% break %}{% endfilter %}l{% endfor %}"),
            "");
  EXPECT_EQ(R("{% for s in [1, 2] %}{% filter upper %}a{% if s == 1 %}{% continue %}{% endif %}"
              "{% endfilter %}l{% endfor %}"),
            "Al");
  EXPECT_EQ(R("{% for s in [1, 2] %}{% set v %}a{{ s }}{% if s == 1 %}{% continue %}{% endif %}"
              "{% endset %}[{{ v }}]{% endfor %}"),
            "[a2]");
  EXPECT_EQ(R("{% for s in [1, 2] %}{% set v %}{% for q in [1] %}{% break %}{% endfor %}x"
              "{% endset %}[{{ v }}]{% endfor %}"),
            "[x][x]");
  EXPECT_THAT(R("{% for s in [1, 2] %}{% generation %}{% break %}{% endgeneration %}l{% endfor %}"),
              HasSubstr("'break' outside loop"));
}

}  // namespace
}  // namespace prefixd::jinja
