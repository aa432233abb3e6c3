#!/usr/bin/python3
"""Differential test: prefixd's Jinja interpreter (tokenizer/jinja, through the
render-template tool) against Python's jinja2 configured as transformers configures it.

Cases are random and seeded: generated templates over the features chat templates use
(whitespace control, if/for/set/namespace/macros, loop variables, filters, tests, string and
dict methods, operators, undefined values), mostly well-formed but some deliberately broken,
rendered with random variables; and the real chat templates in ../shared/chat_templates
rendered with random conversations. Every case goes through one render-template process as a
JSON line. Outcomes must agree: the same output, or both failing. When both fail, the error
kinds are grouped (syntax / raise_exception / runtime); a group mismatch is a softer finding
(printed, fatal only with --strict-kinds), as is an OverflowError where Python's unbounded
integers went past 64 bits. raise_exception's message must match exactly.

  jinja_differential_test.py --render build/tools/render-template \\
      --templates ../shared/chat_templates --seconds 60 [--seed S] [--cases N]
  jinja_differential_test.py --seed S --only-case K --render ...   replay one case
  jinja_differential_test.py --python-only --cases 2000            check the generator

Needs only the Python standard library and python3-jinja2 (exit 77, a skip, without it).
Exit status: 0 agreement, 1 a mismatch, 2 a usage or setup error.
"""
import argparse
import difflib
import json
import os
import random
import select
import subprocess
import sys
import time

from hf_jinja_env import FROZEN_NOW, make_env  # noqa: E402 - exits 77 without jinja2

FROZEN_NOW_ISO = FROZEN_NOW.isoformat()
CASE_TIMEOUT_S = 20

ENV = make_env()
_COMPILED = {}


def py_render(template, variables):
    """('ok', output) or ('err', kind, message), kind being the exception's class name."""
    try:
        t = _COMPILED.get(template)
        if t is None:
            t = ENV.from_string(template)
            if len(_COMPILED) > 64:
                _COMPILED.clear()
            _COMPILED[template] = t
        return ("ok", t.render(**json.loads(json.dumps(variables))))
    except Exception as e:  # noqa: BLE001 - every failure is an outcome to compare
        return ("err", type(e).__name__, str(e))


# ---------------------------------------------------------------- the C++ side


class Renderer:
    """One render-template process fed JSON lines; restarted after a crash or a hang."""

    def __init__(self, path):
        self.path = path
        self.proc = None

    def _start(self):
        self.proc = subprocess.Popen(
            [self.path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
            self.proc = None

    def _kill(self):
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def render(self, template, variables):
        if self.proc is None:
            self._start()
        line = json.dumps({"template": template, "variables": variables, "now": FROZEN_NOW_ISO}, ensure_ascii=False)
        try:
            self.proc.stdin.write(line.encode("utf-8") + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            rc = self.proc.wait()
            self.proc = None
            return ("err", "Crash", f"render-template exited with status {rc}")
        ready, _, _ = select.select([self.proc.stdout], [], [], CASE_TIMEOUT_S)
        if not ready:
            self._kill()
            return ("err", "Hang", f"no answer within {CASE_TIMEOUT_S} s")
        reply = self.proc.stdout.readline()
        if not reply:
            rc = self.proc.wait()
            self.proc = None
            return ("err", "Crash", f"render-template exited with status {rc}")
        reply = json.loads(reply)
        if "output" in reply:
            return ("ok", reply["output"])
        return ("err", reply.get("error_kind", ""), reply.get("message", ""))


# ---------------------------------------------------------------- comparing outcomes

SYNTAX_KINDS = {"TemplateSyntaxError", "TemplateAssertionError", "SyntaxError"}
BROKEN_KINDS = {"Crash", "Hang", "CppException", "InputError"}  # never acceptable


def kind_group(kind):
    if kind in SYNTAX_KINDS:
        return "syntax"
    if kind == "TemplateError":
        return "raise_exception"
    return "runtime"


def compare(py, cc):
    """None when the outcomes agree, else (category, hard)."""
    if cc[0] == "err" and cc[1] in BROKEN_KINDS:
        return ("cc-" + cc[1].lower(), True)
    if py[0] == "ok" and cc[0] == "ok":
        return None if py[1] == cc[1] else ("output", True)
    if py[0] == "ok":
        if cc[1] == "OverflowError":  # integers are 64-bit in prefixd, Python's are unbounded
            return ("int64-overflow", False)
        return ("cc-error", True)
    if cc[0] == "ok":
        return ("cc-accepts", True)
    if kind_group(py[1]) != kind_group(cc[1]):
        return ("kind", False)
    if py[1] == "TemplateError" and py[2] != cc[2]:
        return ("raise-message", True)
    return None


def describe(outcome):
    if outcome[0] == "ok":
        return f"output {outcome[1]!r}"
    return f"{outcome[1]}: {outcome[2]}"


def minimal_diff(expected, got):
    """The first differing position with context, then a short line diff."""
    i = 0
    while i < min(len(expected), len(got)) and expected[i] == got[i]:
        i += 1
    lo = max(0, i - 40)
    lines = [
        f"  first difference at character {i} (expected {len(expected)} chars, got {len(got)}):",
        f"    expected ...{expected[lo:i + 40]!r}",
        f"    got      ...{got[lo:i + 40]!r}",
    ]
    diff = list(difflib.unified_diff(expected.splitlines(True), got.splitlines(True), "python jinja2",
                                     "render-template", n=1))
    if 0 < len(diff) <= 30:
        lines += ["    " + repr(d)[1:-1] for d in diff]
    return "\n".join(lines)


# ---------------------------------------------------------------- random values

WORDS = ["apple", "Apple", "banana", "Banana", "cherry", "date", "élan", "Zoë", "naïve", "straße", "ΟΔΟΣ",
         "日本語", "emoji🙂", "tool", "user", "x", "a b", "it's", 'say "hi"', "back\\slash", "tab\there", ""]
TEXT_BITS = ["Hello", "world", "the cache", "What is 2+2?", "It's", '"quoted"', "naïve café", "Straße", "ΟΔΟΣ",
             "Привет", "日本語のテキスト", "🙂👍", "{braces}", "50%", "<tag>", "a\\b", "line\nbreak",
             "\ttabbed",
             "  padded  ", "x", "-", "...", "tool_calls", "<think>hmm</think>", "e.g.", "42", "3.14", "\n\n"]
RARE_BITS = ["\u00a0nbsp\u00a0", "\u3000", "\x1f", "\u200b", "\r", "\x7f", "İstanbul", "ǅ", "ﬁ"]


def rand_text(rng, lo=0, hi=8):
    rare = 0.04 if RARE_BITS else 0.0
    parts = [rng.choice(RARE_BITS) if rng.random() < rare else rng.choice(TEXT_BITS)
             for _ in range(rng.randint(lo, hi))]
    sep = rng.choice([" ", " ", " ", "\n", ", ", ""])
    text = sep.join(parts)
    if rng.random() < 0.2:
        text = rng.choice([" ", "\n", "  \n"]) + text + rng.choice([" ", "\n", "\t"])
    return text


FLOATS = [0.0, 0.5, 1.0, 2.5, -1.25, 0.1, 1 / 3, 1e16, 1e-7, 123.456]


def rand_float(rng):
    return rng.choice(FLOATS + [round(rng.uniform(-100, 100), rng.randint(0, 6))])


def rand_tool(rng, name=None):
    name = name or rng.choice(["get_weather", "search", "calculator", "send_email", "lookup_user"])
    props = {}
    for p in rng.sample(["location", "query", "unit", "limit", "to", "body", "expression"], rng.randint(0, 3)):
        prop = {"type": rng.choice(["string", "integer", "number", "boolean"]), "description": rand_text(rng, 1, 4)}
        if rng.random() < 0.3:
            prop["enum"] = rng.sample(["celsius", "fahrenheit", "kelvin"], 2)
        props[p] = prop
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": rand_text(rng, 1, 6),
            "parameters": {"type": "object", "properties": props, "required": list(props)[:1]},
        },
    }


def rand_call_id(rng):
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(9))


def rand_tool_call(rng, tools, string_args=False):
    name = rng.choice(tools)["function"]["name"] if tools else "get_weather"
    args = {}
    for key in rng.sample(["location", "query", "unit", "limit", "flag"], rng.randint(0, 3)):
        args[key] = rng.choice([rand_text(rng, 1, 3), rng.randint(-5, 100), rand_float(rng), True, None])
    return {
        "id": rand_call_id(rng),
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False) if string_args else args},
    }


def rand_conversation(rng, tools, lo=1, hi=8, irregular=0.03, string_args=None, system=0.6, tool_turns=True,
                      list_content=True, none_content=True):
    """System (sometimes), then user/assistant turns; assistants sometimes call tools and the
    tool replies follow. Each turn's role is, with probability `irregular`, any role."""
    messages = []
    if rng.random() < system:
        messages.append({"role": "system", "content": rand_text(rng, 1, 6)})
    if string_args is None:
        string_args = rng.random() < 0.15
    for i in range(rng.randint(lo, hi)):
        role = "user" if i % 2 == 0 else "assistant"
        if rng.random() < irregular:
            role = rng.choice(["user", "assistant", "system", "tool"])
        message = {"role": role, "content": rand_text(rng, 0, 10)}
        if role == "assistant" and tool_turns and rng.random() < 0.3:
            calls = [rand_tool_call(rng, tools, string_args) for _ in range(1 if rng.random() < 0.9 else 2)]
            message["tool_calls"] = calls
            message["content"] = rng.choice(["", message["content"]] + ([None] if none_content else []))
            messages.append(message)
            for call in calls:
                result = rng.choice([json.dumps({"result": rand_text(rng, 1, 3)}), rand_text(rng, 1, 4)])
                messages.append({"role": "tool", "tool_call_id": call["id"], "name": call["function"]["name"],
                                 "content": result})
            if rng.random() < 0.85:  # the assistant answers from the results
                messages.append({"role": "assistant", "content": rand_text(rng, 1, 8)})
            continue
        if role == "assistant" and rng.random() < 0.1:
            message["reasoning_content"] = rand_text(rng, 1, 5)
        if role == "user" and list_content and rng.random() < 0.15:
            message["content"] = [{"type": "text", "text": rand_text(rng, 1, 5)}]
        messages.append(message)
    return messages


def generated_variables(rng):
    """The variables a generated template may use; types are fixed, values random."""
    tools = [rand_tool(rng, n) for n in rng.sample(["get_weather", "search", "calculator"], rng.randint(0, 2))]
    messages = rand_conversation(rng, tools, lo=2, hi=6, irregular=0.0, string_args=False, list_content=False,
                                 none_content=False)
    for m in messages:
        m.pop("reasoning_content", None)
    if len(messages) < 3:
        messages.append({"role": "user", "content": rand_text(rng, 1, 4)})
    return {
        "messages": messages,
        "tools": tools,
        "bos_token": rng.choice(["<s>", "<|begin_of_text|>", ""]),
        "eos_token": rng.choice(["</s>", "<|eot_id|>"]),
        "add_generation_prompt": rng.random() < 0.5,
        "text": rand_text(rng, 0, 8),
        "word": rng.choice(WORDS),
        "n": rng.randint(0, 6),
        "k": rng.randint(-7, 20),
        "x": rand_float(rng),
        "flag": rng.random() < 0.5,
        "nothing": None,
        "names": [rng.choice(WORDS) for _ in range(rng.randint(0, 5))],
        "nums": [rng.randint(-10, 30) for _ in range(rng.randint(0, 6))],
        "cfg": {
            "name": rng.choice(WORDS),
            "count": rng.randint(0, 9),
            "ratio": rand_float(rng),
            "enabled": rng.random() < 0.5,
            "tags": [rng.choice(WORDS) for _ in range(rng.randint(0, 3))],
            "extra": None,
            "nested": {"level": rng.randint(0, 3), "label": rand_text(rng, 0, 2)},
        },
    }


# ---------------------------------------------------------------- random templates
# Expressions are generated by type so that well-formed templates almost always render:
# str int float bool none strs ints dict msgs msg tools tool tcs tc any, and "maybe" (may be
# undefined: printed, defaulted or tested only).

GLOBAL_TYPES = {
    "text": "str", "word": "str", "bos_token": "str", "eos_token": "str", "n": "int", "k": "int",
    "x": "float", "flag": "bool", "add_generation_prompt": "bool", "nothing": "none", "names": "strs",
    "nums": "ints", "cfg": "dict", "messages": "msgs", "tools": "tools",
}
PRINTABLE = ["str", "str", "str", "int", "float", "bool", "none", "strs", "ints", "dict"]
STR_LITERALS = ["''", "'a'", "'Hello'", '"it\'s"', "'say \"hi\"'", "'\\n'", "'\\t'", "' x '", "'\\\\'",
                "'é'", "'\\u00e9'", "'\\x41'", "'日本'", "'🙂'", "'-'", "', '", "'apple'", "'Apple'", "'a b c'",
                "'<|im_start|>'", "'\\n\\n'", "'line1\\nline2'", "\"double\"", "'%s'", "'{'", "'}'", "'a\\d'"]
JOINERS = ["", "', '", "'\\n'", "'|'"]
SIMPLE_VALUES = ["n", "k", "word", "flag", "nothing", "3", "'apple'", "true", "none", "x", "0.5", "text", "[]"]
ROUND_ARGS = ["", "(1)", "(2)", '(0, "floor")', "(1, 'ceil')", "(2, 'common')"]
STRFTIME_FORMATS = ["%d %b %Y", "%Y-%m-%d", "%A, %B %-d, %Y", "%H:%M:%S", "%j %U %w %a", "%I %p %y", "%%",
                    "%c", "%x %X", "%f", "%z%Z|", "%e %G-W%V"]


class Scope:
    def __init__(self, parent=None, loop=False, macro=False):
        self.parent, self.vars = parent, {}
        self.loop = loop or (parent is not None and parent.loop and not macro)
        # break/continue: in the loop's body, its if branches and set blocks, not in a
        # {% generation %} body or a macro (functions of their own in jinja2)
        self.breakable = loop or (parent is not None and parent.breakable and not macro)

    def lookup(self, name):
        s = self
        while s is not None:
            if name in s.vars:
                return s.vars[name]
            s = s.parent
        return None

    def names_of(self, t):
        out, s, seen = [], self, set()
        while s is not None:
            for name, vt in s.vars.items():
                if name not in seen:
                    seen.add(name)
                    if vt == t:
                        out.append(name)
            s = s.parent
        return out


class TemplateGen:
    """A random template as a list of pieces: (kind, text), kind in text/tag/end/expr/comment."""

    def __init__(self, rng):
        self.rng = rng
        self.counter = 0
        self.macros = []  # (name, [param types])
        self.ns = None  # namespace variable name and its attribute types
        self.pieces = []

    # ---- helpers
    def chance(self, p):
        return self.rng.random() < p

    def pick(self, seq):
        return self.rng.choice(seq)

    def fresh(self, prefix="v"):
        self.counter += 1
        return f"{prefix}{self.counter}"

    def var(self, scope, t):
        names = scope.names_of(t)
        if self.ns is not None:
            names += [f"{self.ns[0]}.{a}" for a, at in self.ns[1].items() if at == t]
        return self.pick(names) if names else None

    def paren(self, e):
        """Parenthesizes a compound expression (a space outside brackets and quotes);
        precedence is exercised by the forms that leave parentheses out on purpose."""
        depth, quote, escaped = 0, None, False
        for ch in e:
            if quote:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == quote:
                    quote = None
            elif ch in "'\"":
                quote = ch
            elif ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            elif ch == " " and depth == 0:
                return f"({e})"
        return e

    def atom(self, e):
        """As paren, and also around a filter chain or a unary minus: `.attr`, `[i]` and
        `.method()` may follow it."""
        if self.paren(e) != e or e.startswith("-"):
            return f"({e})"
        depth, quote, escaped = 0, None, False
        for ch in e:
            if quote:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == quote:
                    quote = None
            elif ch in "'\"":
                quote = ch
            elif ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            elif ch == "|" and depth == 0:
                return f"({e})"
        return e

    # ---- expressions
    def expr(self, t, scope, d):
        d = min(d, 4)
        fn = getattr(self, "e_" + t)
        return fn(scope, d)

    def e_any(self, scope, d):
        v = self.var(scope, "anyval")
        if v and self.chance(0.3):
            return v
        return self.expr(self.pick(PRINTABLE), scope, d - 1)

    def e_maybe(self, scope, d):
        options = ["missing_var", "cfg.missing", "cfg.nested.missing", "names[7]", "text[300]", "nothing.attr",
                   f"({self.expr('str', scope, d - 1)} if {self.expr('bool', scope, d - 1)})", "messages[0].nope",
                   "cfg['extra']", "word[0]"]
        if scope.loop:
            options += ["loop.previtem", "loop.nextitem"]
        v = self.var(scope, "maybe")
        if v:
            options.append(v)
        return self.pick(options)

    def e_none(self, scope, d):
        return self.pick(["none", "None", "nothing", "cfg.extra", "cfg.get('missing')", "cfg['extra']"])

    def e_str(self, scope, d):
        rng = self.rng
        leaf = [lambda: self.pick(STR_LITERALS), lambda: self.var(scope, "str") or "text", lambda: "cfg.name",
                lambda: "cfg['nested']['label']", lambda: "cfg.get('name')", lambda: "cfg.get('missing', 'fallback')",
                lambda: f"strftime_now('{self.pick(STRFTIME_FORMATS)}')", lambda: "messages[0].role",
                lambda: "(messages|last)['content']", lambda: "bos_token", lambda: "word"]
        if d <= 0:
            return self.pick(leaf)()
        s = lambda: self.expr("str", scope, d - 1)  # noqa: E731
        filters = ["trim", "lower", "upper", "capitalize", "title", "string", "replace('a', 'A')",
                   "replace(' ', '_', 1)", "replace('\\n', '\\\\n')", "trim('. ')", "indent(2)", "indent(4, true)",
                   "indent(2, first=true, blank=true)", "default('dflt')", "default('empty', true)",
                   "first|default('')", "last|default('')", "length|string",
                   "list|join('.')", "tojson"]
        methods = ["strip()", "strip(' .')", "lstrip()", "rstrip()", "rstrip('!\\n')", "lower()", "upper()", "title()",
                   "replace('e', '3')", "replace('a', '', 1)", "split(',')[0]", "split()|join('-')",
                   "split(' ', 1)|join('|')",
                   "split('\\n')|last"]
        slices = ["[1:]", "[:3]", "[::-1]", "[-2:]", "[1:-1]", "[::2]", "[-1:]", "[:-1]", "[2:1]"]
        forms = [
            (3, lambda: self.pick(leaf)()),
            (2, lambda: f"{self.paren(s())} + {self.paren(s())}"),
            (3, lambda: f"{self.paren(self.e_any(scope, d))} ~ {self.paren(self.e_any(scope, d))}"),
            (3, lambda: f"{self.paren(s())}|{self.pick(filters)}"),
            (2, lambda: f"{self.atom(s())}.{self.pick(methods)}"),
            (2, lambda: f"({s()}){self.pick(slices)}"),
            (1, lambda: f"({s()} if {self.expr('bool', scope, d - 1)} else {s()})"),
            (2, lambda: f"{self.paren(self.expr(self.pick(PRINTABLE), scope, d - 1))}|string"),
            (2, lambda: self.e_json_text(scope, d)),
            (2, lambda: f"{self.paren(self.expr('strs', scope, d - 1))}|join({self.pick(JOINERS)})"),
            (1, lambda: f"{self.paren(self.expr('ints', scope, d - 1))}|join(',')"),
            (1, lambda: "messages|map(attribute='role')|join(', ')"),
            (1, lambda: "messages|map(attribute='name', default='anon')|join(',')"),
            (1, lambda: "messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|join('\\n')"),
            (1, lambda: f"{self.atom(self.expr('msg', scope, d - 1))}.{self.pick(['role', 'content'])}"),
            (1, lambda: f"{self.atom(self.expr('msg', scope, d - 1))}['role']"),
            (1, lambda: f"{self.atom(self.expr('msg', scope, d - 1))}.get('name', 'anon')"),
            (1, lambda: f"({s()} or 'fallback')"),
            (1, lambda: f"({s()} and 'yes')"),
            (1, lambda: f"({s()}) * {rng.randint(0, 3)}"),
            (1, lambda: f"{self.paren(self.expr('strs', scope, d - 1))}|first|default('none')"),
            (1, lambda: f"{self.paren(self.expr('strs', scope, d - 1))}|sort|join(' ')"),
            (1, lambda: f"{self.paren(self.expr('strs', scope, d - 1))}|unique|join(',')"),
            (1, lambda: f"{self.paren(self.expr('strs', scope, d - 1))}|map('upper')|join"),
            (1, lambda: f"{self.paren(self.expr('float', scope, d - 1))}|round({rng.randint(0, 3)})|string"),
            (1, lambda: "cfg|join(',')"),
            (1, lambda: f"{self.paren(self.expr('dict', scope, d - 1))}|items|list|string"),
            (1, lambda: f"{self.atom(self.expr('dict', scope, d - 1))}.values()|list|string"),
            (1, lambda: "tools|map(attribute='function.name')|join(', ')"),
            (1, lambda: "tools|map(attribute='function')|map(attribute='name')|join"),
            (1, lambda: f"messages|join({self.pick(STR_LITERALS)}, attribute='role')"),
            (1, lambda: "messages|sort(attribute='content')|map(attribute='role')|join"),
            (1, lambda: self.pick(["(1, 'a')", "(none,)", "()", "{1: 'a', 'b': none}", "{'k': (1, 2)}"])
             + self.pick(["|tojson", "|string", "|list|string", "|length|string"])),
            (1, lambda: "messages|sort(attribute='role', reverse=true)|map(attribute='role')|join"),
        ]
        if self.macros:
            forms.append((3, lambda: self.macro_call(scope, d)))
        if scope.loop:
            forms.append((1, lambda: "loop.index ~ '/' ~ loop.length"))
            forms.append((1, lambda: f"loop.cycle({self.pick(STR_LITERALS)}, {self.pick(STR_LITERALS)})"))
        for name in scope.names_of("tool"):
            forms.append((2, lambda name=name: f"{name}.function.{self.pick(['name', 'description'])}"))
        for name in scope.names_of("tc"):
            forms.append((2, lambda name=name: self.pick([f"{name}.function.name", f"{name}.id",
                                                          f"{name}['function']['name']"])))
        for name in scope.names_of("msg"):
            forms.append((2, lambda name=name: f"{name}.{self.pick(['role', 'content'])}"))
        return self.weighted(forms)()

    def e_json_text(self, scope, d):
        value = self.expr(self.pick(PRINTABLE + ["msg", "dict", "tools"]), scope, d - 1)
        args = self.pick(["", "", "(indent=2)", "(indent=4)", "(sort_keys=true)", "(separators=(',', ':'))",
                          "(indent=2, sort_keys=true)"])
        return f"{self.paren(value)}|tojson{args}"

    def e_int(self, scope, d):
        rng = self.rng
        leaf = [lambda: str(rng.randint(0, 20)), lambda: str(rng.randint(-5, -1)),
                lambda: self.var(scope, "int") or "n",
                lambda: "cfg.count", lambda: "cfg['nested'].level", lambda: "messages|length", lambda: "names|length",
                lambda: "text|length", lambda: "1_000"]
        if scope.loop:
            leaf += [lambda: self.pick(["loop.index", "loop.index0", "loop.length", "loop.revindex", "loop.revindex0",
                                        "loop.depth", "loop.depth0"])]
        if d <= 0:
            return self.pick(leaf)()
        i = lambda: self.expr("int", scope, d - 1)  # noqa: E731
        nonzero = lambda: self.pick(["2", "3", "7", "-2", "-3", "10"])  # noqa: E731
        forms = [
            (4, lambda: self.pick(leaf)()),
            (2, lambda: f"{self.paren(i())} {self.pick(['+', '-'])} {self.paren(i())}"),
            (1, lambda: f"{self.paren(i())} * {rng.randint(-3, 4)}"),
            (2, lambda: f"{self.paren(i())} {self.pick(['//', '%'])} {nonzero()}"),  # may be float too
            (1, lambda: f"-{self.atom(i())}"),
            (1, lambda: f"-{self.pick(['n', 'k', 'cfg.count', '3'])}|abs"),  # (-n)|abs
            (1, lambda: f"{i()} + {i()} * {i()} - {i()}"),
            (1, lambda: f"{self.paren(i())}|abs"),
            (2, lambda: f"{self.paren(self.expr(self.pick(['str', 'strs', 'ints', 'dict', 'msgs']), scope, d - 1))}"
                        f"|{self.pick(['length', 'count'])}"),
            (2, lambda: f"{self.pick(['42', ' 7 ', '-3', '3.9', '-3.9', 'x', '1_000', '0x1A', '', '1e3'])!r}|int"),
            (1, lambda: f"'zz'|int({rng.randint(-2, 5)})"),
            (1, lambda: f"{self.paren(self.expr('float', scope, d - 1))}|int"),
            (1, lambda: f"{self.pick(['true', 'false', 'none', 'nothing'])}|int"),
            (1, lambda: f"{self.paren(self.expr('ints', scope, d - 1))}|first|default(0)"),
            (1, lambda: f"{self.paren(self.expr('ints', scope, d - 1))}|sort|last|default(-1)"),
            (1, lambda: f"({i()} if {self.expr('bool', scope, d - 1)} else {i()})"),
            (1, lambda: "cfg.get('count', 0)"),
            (1, lambda: f"cfg.get('missing', {rng.randint(0, 9)})"),
            (1, lambda: f"[1, 2, 3][{rng.randint(-3, 2)}]"),
            (1, lambda: f"range({rng.randint(0, 5)})|list|length"),
            (1, lambda: f"{self.paren(self.expr('float', scope, d - 1))}|round|int"),
        ]
        return self.weighted(forms)()

    def e_float(self, scope, d):
        leaf = [lambda: self.pick(["0.5", "1.25", "2.0", "0.1", "3.14159", "100.0", "1e3", "2.5e-3", "1_000.5", "0.0"]),
                lambda: "x", lambda: "cfg.ratio", lambda: self.var(scope, "float") or "x"]
        if d <= 0:
            return self.pick(leaf)()
        f = lambda: self.expr("float", scope, d - 1)  # noqa: E731
        num = lambda: self.expr(self.pick(["int", "float"]), scope, d - 1)  # noqa: E731
        forms = [
            (3, lambda: self.pick(leaf)()),
            (2, lambda: f"{self.paren(num())} / {self.pick(['2', '3', '7', '0.5', '-4', '1e3'])}"),
            (2, lambda: f"{self.paren(f())} {self.pick(['+', '-', '*'])} {self.paren(num())}"),
            (0 if "float-divmod" in AVOID else 1,
             lambda: f"{self.paren(f())} {self.pick(['//', '%'])} {self.pick(['2', '0.75', '-3', '0.1'])}"),
            (1, lambda: f"-{self.atom(f())}"),
            (1, lambda: f"{self.paren(f())}|abs"),
            (2, lambda: f"{self.paren(f())}|round{self.pick(ROUND_ARGS[:3] if 'round-sign' in AVOID else ROUND_ARGS)}"),
            (1, lambda: f"{self.pick(['2.5', '1e3', 'abc', '-0.5', ' 3 ', '1_0.5', ''])!r}|float"),
            (1, lambda: f"{self.paren(self.expr('int', scope, d - 1))}|float"),
            (1, lambda: f"({f()} if {self.expr('bool', scope, d - 1)} else {f()})"),
        ]
        return self.weighted(forms)()

    def e_bool(self, scope, d):
        leaf = [lambda: self.pick(["true", "false", "True", "False"]), lambda: "flag", lambda: "add_generation_prompt",
                lambda: "cfg.enabled", lambda: self.var(scope, "bool") or "flag"]
        if scope.loop:
            leaf += [lambda: self.pick(["loop.first", "loop.last"]), lambda: f"loop.changed({self.e_any(scope, 1)})"]
        if d <= 0:
            return self.pick(leaf)()
        b = lambda: self.expr("bool", scope, d - 1)  # noqa: E731
        i = lambda: self.expr(self.pick(["int", "int", "float"]), scope, d - 1)  # noqa: E731
        s = lambda: self.expr("str", scope, d - 1)  # noqa: E731
        anything = lambda: self.expr(self.pick(PRINTABLE + ["msg", "maybe"]), scope, d - 1)  # noqa: E731
        tests = ["defined", "undefined", "none", "string", "number", "mapping", "iterable", "sequence", "true", "false"]
        forms = [
            (3, lambda: self.pick(leaf)()),
            (2, lambda: f"{self.paren(i())} {self.pick(['==', '!=', '<', '>', '<=', '>='])} {self.paren(i())}"),
            (2, lambda: f"{self.paren(s())} {self.pick(['==', '!=', '<', '>='])} {self.paren(s())}"),
            (2, lambda: f"{self.paren(b())} {self.pick(['and', 'or'])} {self.paren(b())}"),
            (1, lambda: f"{b()} and {b()} or {b()}"),
            (2, lambda: f"not {self.paren(b())}"),
            (1, lambda: f"not {self.paren(anything())} is {self.pick(tests)}"),  # not (x is t)
            (2, lambda: f"{self.paren(s())} {self.pick(['in', 'not in'])} {self.paren(s())}"),
            (1, lambda: f"{self.paren(s())} in {self.expr('strs', scope, d - 1)}"),
            (1, lambda: f"{self.paren(self.expr('int', scope, d - 1))} in {self.expr('ints', scope, d - 1)}"),
            (1, lambda: f"{self.pick(['name', 'missing', 'tags', 'extra'])!r} in cfg"),
            (1, lambda: f"'tool_calls' {self.pick(['in', 'not in'])} {self.expr('msg', scope, d - 1)}"),
            (4, lambda: f"{self.paren(anything())} is {self.pick(['', 'not '])}{self.pick(tests)}"),
            # without parentheses a test's argument is a bare name or literal
            (1, lambda: f"{self.paren(anything())} is {self.pick(['', 'not '])}equalto {self.pick(SIMPLE_VALUES)}"),
            (1, lambda: f"{self.paren(anything())} is {self.pick(['', 'not '])}equalto({anything()})"),
            (1, lambda: f"{self.paren(i())} is equalto({self.paren(i())})"),
            (1, lambda: f"{self.pick(['missing_var', 'cfg.missing', 'tools', 'custom_tools'])} is "
                        f"{self.pick(['', 'not '])}defined"),
            (2, lambda: f"{self.atom(s())}.{self.pick(['startswith', 'endswith'])}({self.pick(STR_LITERALS)})"),
            (1, lambda: f"{self.paren(self.expr(self.pick(['strs', 'msgs', 'str']), scope, d - 1))}|length > 0"),
        ]
        return self.weighted(forms)()

    def e_strs(self, scope, d):
        leaf = [lambda: self.pick(["names", "cfg.tags", "['a', 'B', 'a']", "[]", "text.split()", "text.split(',')",
                                   "cfg|list", "cfg.keys()|list"]),
                lambda: self.var(scope, "strs") or "names"]
        if d <= 0:
            return self.pick(leaf)()
        l = lambda: self.expr("strs", scope, d - 1)  # noqa: E731
        forms = [
            (4, lambda: self.pick(leaf)()),
            (1, lambda: f"{self.paren(l())} + [{self.pick(STR_LITERALS)}]"),
            (2, lambda: f"({l()}){self.pick(['[1:]', '[::-1]', '[-2:]', '[:2]', '[::2]'])}"),
            (2, lambda: f"{self.paren(l())}|sort{self.pick(['', '(reverse=true)', '(case_sensitive=true)'])}"),
            (1, lambda: f"{self.paren(l())}|unique{self.pick(['', '(case_sensitive=true)'])}|list"),
            (1, lambda: f"{self.paren(l())}|select('equalto', {self.pick(['apple', 'Apple', 'x'])!r})|list"),
            (1, lambda: f"{self.paren(l())}|reject('equalto', 'apple')|list"),
            (1, lambda: f"{self.paren(l())}|select|list"),
            (1, lambda: f"{self.paren(l())}|map('{self.pick(['upper', 'lower', 'trim', 'capitalize'])}')|list"),
            (1, lambda: f"{self.paren(l())}|reverse|list"),
            (1, lambda: "messages|map(attribute='role')|list"),
            (1, lambda: f"{self.paren(self.expr('str', scope, d - 1))}|list"),
            (1, lambda: f"{self.atom(self.expr('dict', scope, d - 1))}.keys()|list"),
        ]
        return self.weighted(forms)()

    def e_ints(self, scope, d):
        leaf = [lambda: "nums", lambda: f"range({self.pick(['n', '3', '0'])})|list", lambda: "[1, 2, 3]",
                lambda: "range(10, 0, -3)|list", lambda: "range(2, 5)|list", lambda: self.var(scope, "ints") or "nums"]
        if d <= 0:
            return self.pick(leaf)()
        l = lambda: self.expr("ints", scope, d - 1)  # noqa: E731
        forms = [
            (4, lambda: self.pick(leaf)()),
            (1, lambda: f"{self.paren(l())} + [{self.expr('int', scope, d - 1)}]"),
            (1, lambda: f"({l()}){self.pick(['[1:]', '[::-1]', '[-2:]'])}"),
            (1, lambda: f"{self.paren(l())}|sort{self.pick(['', '(reverse=true)'])}"),
            (1, lambda: f"{self.paren(l())}|unique|list"),
            (1, lambda: f"{self.paren(l())}|select|list"),
            (1, lambda: f"{self.paren(l())}|reject|list"),
            (1, lambda: f"{self.paren(l())}|map('abs')|list"),
            (1, lambda: "messages|map(attribute='content')|map('length')|list"),
        ]
        return self.weighted(forms)()

    def e_dict(self, scope, d):
        options = ["cfg", "cfg.nested", "{}", f"{{'a': 1, 'b': {self.expr('str', scope, d - 1)}}}",
                   f"{{'k': {self.expr(self.pick(PRINTABLE), scope, d - 1)}, 'n': none}}", "messages[0]",
                   self.var(scope, "dict") or "cfg"]
        return self.pick(options)

    def e_msgs(self, scope, d):
        return self.pick(["messages", "messages[1:]", "messages[-2:]", "messages[::-1]",
                          "messages|selectattr('role', 'equalto', 'user')|list",
                          "messages|rejectattr('role', 'equalto', 'system')|list",
                          "messages|selectattr('tool_calls', 'defined')|list",
                          "messages|rejectattr('tool_calls')|list", "messages|sort(attribute='role')",
                          "messages|selectattr('content')|list", self.var(scope, "msgs") or "messages"])

    def e_msg(self, scope, d):
        options = ["messages[0]", "messages[-1]", "(messages|first)", "(messages|last)", "messages[1]"]
        options += scope.names_of("msg") * 3
        return self.pick(options)

    def e_tools(self, scope, d):
        return "tools"

    def weighted(self, forms):
        total = sum(w for w, _ in forms)
        r = self.rng.uniform(0, total)
        for w, f in forms:
            r -= w
            if r <= 0:
                return f
        return forms[-1][1]

    def macro_call(self, scope, d):
        name, params = self.pick(self.macros)
        args = [self.expr(params[0], scope, d - 1)]
        if self.chance(0.4):
            args.append(self.expr(params[1], scope, d - 1))
            if self.chance(0.3):
                args.append(self.expr(params[2], scope, d - 1))
        elif self.chance(0.3):
            args.append(f"c={self.expr(params[2], scope, d - 1)}")
        return f"{name}({', '.join(args)})"

    # ---- pieces and whitespace
    def ws(self):
        r = self.rng.random()
        if r < 0.25:
            return ""
        if r < 0.6:
            return "\n" + self.pick(["", "  ", "    ", "\t", "        "])
        if r < 0.7:
            return self.pick([" ", "  ", "\t", "\n", "\n\n", " \n"])
        if r < 0.72:
            return self.pick(["\r\n", "{ ", " }", "# ", "%"])
        return self.pick(["Hello ", "text\n", " - ", "User: ", "é ", "<|x|>", "\n  line  \n", "a\tb"])

    def emit(self, kind, text):
        if self.chance(0.7):
            self.pieces.append(("text", self.ws()))
        self.pieces.append((kind, text))

    def tag(self, body, kind="tag"):
        left = self.pick(["", "", "", "-", "-", "+"] if kind != "end" else ["", "", "-", "-"])
        right = self.pick(["", "", "", "-", "-", "+"])
        pad = " " if self.chance(0.9) else ""
        if self.chance(0.02):
            pad = "\n"
        self.emit(kind, f"{{%{left}{pad}{body}{pad or ' ' if right else pad}{right}%}}")

    def output(self, e):
        left, right = self.pick(["", "", "-"]), self.pick(["", "", "-"])
        pad = " " if self.chance(0.9) else ""
        self.emit("expr", f"{{{{{left}{pad}{e}{pad}{right}}}}}")

    def comment(self):
        left, right = self.pick(["", "-"]), self.pick(["", "-"])
        body = self.pick(["note", "a {{ b }} c", "multi\nline", "", "{% if %}"])
        self.emit("comment", f"{{#{left} {body} {right}#}}")

    # ---- statements
    def block(self, scope, depth, count):
        for _ in range(count):
            self.statement(scope, depth)

    def statement(self, scope, depth):
        forms = [(4, lambda: self.output(self.e_print(scope))), (1, self.comment), (2, lambda: self.s_set(scope))]
        if depth > 0:
            forms += [(3, lambda: self.s_if(scope, depth)), (3, lambda: self.s_for(scope, depth)),
                      (1, lambda: self.s_set_block(scope, depth)), (0.3, lambda: self.s_generation(scope, depth))]
        if self.ns is not None:
            forms.append((2, lambda: self.s_set_ns(scope)))
        if scope.breakable:
            forms.append((1, lambda: self.s_loop_control(scope)))
        if self.macros:
            forms.append((1, lambda: self.output(self.macro_call(scope, 2))))
        forms.append((0.15, lambda: self.s_raise(scope)))
        self.weighted(forms)()

    def e_print(self, scope):
        r = self.rng.random()
        if r < 0.1:
            return self.e_maybe(scope, 2)
        if r < 0.15:
            return f"{self.e_maybe(scope, 2)}|default({self.pick(STR_LITERALS)})"
        if r < 0.2:
            return f"{self.e_maybe(scope, 2)} is defined"
        t = self.pick(PRINTABLE + ["str", "int", "bool"])
        return self.expr(t, scope, self.rng.randint(1, 4))

    def s_set(self, scope):
        t = self.pick(["str", "str", "int", "float", "bool", "strs", "ints", "dict", "msgs", "msg"])
        # Reassigning a set variable (in this scope or an outer one, which a loop or macro
        # shadows); never a render variable: jinja2 makes a render variable that the template
        # sets later undefined in the loops and macros before that set.
        existing = [v for v in scope.names_of(t) if v not in GLOBAL_TYPES]
        name = self.pick(existing) if existing and self.chance(0.3) else self.fresh()
        if self.chance(0.08) and t in ("int", "str"):
            other = self.fresh()
            self.tag(f"set {name}, {other} = {self.expr(t, scope, 2)}, {self.expr(t, scope, 2)}")
            scope.vars[other] = t
        else:
            self.tag(f"set {name} = {self.expr(t, scope, 3)}")
        scope.vars[name] = t

    def s_set_block(self, scope, depth):
        name = self.fresh()
        self.tag(f"set {name}" + self.pick(["", "", " | trim", " | upper"]))
        inner = Scope(scope)
        if "block-loop-control" in AVOID:
            inner.breakable = False
        self.block(inner, depth - 1, self.rng.randint(1, 3))
        self.tag("endset", "end")
        scope.vars[name] = "str"

    def s_set_ns(self, scope):
        ns, attrs = self.ns
        a = self.pick(list(attrs))
        t = attrs[a]
        if t == "int":
            value = f"{ns}.{a} + {self.expr('int', scope, 1)}"
        elif t == "str":
            value = f"{ns}.{a} ~ {self.paren(self.e_any(scope, 2))}"
        else:
            value = self.expr(t, scope, 2)
        self.tag(f"set {ns}.{a} = {value}")

    def s_if(self, scope, depth):
        branches = []
        self.tag(f"if {self.cond(scope)}")
        branches.append(self.branch(scope, depth))
        for _ in range(self.rng.randint(0, 2) if self.chance(0.4) else 0):
            self.tag(f"elif {self.cond(scope)}")
            branches.append(self.branch(scope, depth))
        if self.chance(0.5):
            self.tag("else")
            branches.append(self.branch(scope, depth))
        self.tag("endif", "end")
        # a set inside an if leaks out, but only when its branch ran
        for b in branches:
            for name, t in b.items():
                if scope.lookup(name) != t:
                    scope.vars[name] = "maybe"

    def branch(self, scope, depth):
        inner = Scope(scope)
        self.block(inner, depth - 1, self.rng.randint(0, 3))
        return inner.vars

    def cond(self, scope):
        if self.chance(0.2):  # truthiness of any value
            return self.expr(self.pick(PRINTABLE + ["maybe", "msgs"]), scope, 2)
        return self.expr("bool", scope, 3)

    def s_for(self, scope, depth):
        rng = self.rng
        inner = Scope(scope, loop=True)
        kind = rng.random()
        if kind < 0.3:
            item, t = self.fresh("m"), "msg"
            head = f"{item} in {self.e_msgs(scope, 1)}"
        elif kind < 0.45:
            item, t = self.fresh("s"), "str"
            head = f"{item} in {self.expr('strs', scope, 2)}"
        elif kind < 0.55:
            item, t = self.fresh("i"), "int"
            ranges = ["range(n)", "range(k)", "range(1, 4)", "range(5, 0, -2)", "nums", self.expr("ints", scope, 1)]
            head = f"{item} in {self.pick(ranges)}"
        elif kind < 0.7:
            key, item, t = self.fresh("key"), self.fresh("val"), "any"
            head = f"{key}, {item} in {self.pick(['cfg|items', 'cfg.items()', 'cfg|dictsort', 'cfg.nested.items()'])}"
            if self.chance(0.2):
                key = None
                head = f"{item} in {self.pick(['cfg.values()', 'cfg.nested.values()', 'cfg.keys()'])}"
        elif kind < 0.8:
            item, t = self.fresh("t"), "tool"
            head = f"{item} in tools"
        elif kind < 0.9:
            item, t = self.fresh("c"), "str"
            head = f"{item} in {self.pick(['word', 'text[:12]', 'bos_token'])}"
        else:
            msg = self.e_msg(scope, 1)
            self.tag(f"if {msg}.tool_calls is defined" if self.chance(0.5) else f"if 'tool_calls' in {msg}")
            item, t = self.fresh("tc"), "tc"
            head = f"{item} in {msg}.tool_calls"
            inner.vars[item] = t
            self.tag(f"for {head}")
            self.block(inner, depth - 1, rng.randint(1, 3))
            self.tag("endfor", "end")
            self.tag("endif", "end")
            return
        inner.vars[item] = "anyval" if t == "any" else t
        if t == "any" and key is not None:
            inner.vars[key] = "str"
        if self.chance(0.25):
            probe = Scope(scope)  # the filter sees the item, not this loop's `loop`
            probe.loop = False
            probe.vars = dict(inner.vars)
            head += f" if {self.expr('bool', probe, 2)}"
        has_else = self.chance(0.2)
        if has_else and "loop-else-control" in AVOID:
            inner.breakable = False
        self.tag(f"for {head}")
        self.block(inner, depth - 1, rng.randint(1, 4))
        if has_else:
            self.tag("else")
            self.block(Scope(scope), depth - 1, rng.randint(1, 2))
        self.tag("endfor", "end")

    def s_loop_control(self, scope):
        word = self.pick(["break", "continue"])
        if self.chance(0.2):
            self.tag(word)
        else:
            self.tag(f"if {self.expr('bool', scope, 2)}")
            self.tag(word)
            self.tag("endif", "end")

    def s_generation(self, scope, depth):
        self.tag("generation")
        inner = Scope(scope)
        inner.breakable = False
        self.block(inner, depth - 1, self.rng.randint(1, 2))
        self.tag("endgeneration", "end")

    def s_raise(self, scope):
        self.tag(f"if {self.expr('bool', scope, 2)} and {self.expr('bool', scope, 2)}")
        self.output(f"raise_exception('Bad input: ' ~ {self.paren(self.e_any(scope, 2))})")
        self.tag("endif", "end")

    def s_macro(self, scope):
        name = self.fresh("fmt")
        params = [self.pick(["str", "int", "msg", "strs"]), "str", "int"]
        self.tag(f"macro {name}(a, b={self.pick(STR_LITERALS)}, c={self.rng.randint(0, 3)})")
        inner = Scope(scope, macro=True)
        inner.loop = False
        inner.vars = {"a": params[0], "b": "str", "c": "int"}
        saved, self.ns = self.ns, None  # a namespace set later is not the macro's to see
        self.block(inner, 2, self.rng.randint(1, 3))
        self.ns = saved
        self.tag("endmacro", "end")
        self.macros.append((name, params))

    def generate(self):
        top = Scope()
        top.vars = dict(GLOBAL_TYPES)
        if self.chance(0.15):  # as real templates do, first thing
            self.tag(self.pick(["set messages = messages[1:]", "set messages = messages[-2:]"]))
        if self.chance(0.35):
            self.ns = (self.fresh("ns"), {"count": "int", "text": "str", "seen": "bool"})
            self.tag(f"set {self.ns[0]} = namespace(count=0, text='', seen=false)")
        for _ in range(self.rng.randint(0, 2) if self.chance(0.4) else 0):
            self.s_macro(top)
        self.block(top, self.rng.randint(1, 3), self.rng.randint(2, 7))
        if self.chance(0.5):
            self.pieces.append(("text", self.pick(["\n", "\n\n", " ", "end\n"])))
        return self.pieces


# "anyval": a defined value of unknown type (the value of a dict item) — printable only.
TemplateGen.e_anyval = lambda self, scope, d: self.var(scope, "anyval") or "cfg.extra"


# Known differences a triage run may leave out (--avoid); a normal run generates them all.
AVOID_CHOICES = {
    "loop-else-control": "break/continue in a for loop that has an {% else %}",
    "unknown-name": "unknown filters and tests in broken templates",
    "exotic-text": "text beyond ASCII, Latin-1 and CJK (final sigma, titlecase digraphs, rare spaces)",
    "block-loop-control": "break/continue in a {% set %}...{% endset %} block inside a loop",
    "float-divmod": "// and % on floats (CPython's float divmod: signed zeros, rounding near 2**53)",
    "round-sign": "round(p, 'floor' / 'ceil'), whose Python result is never -0.0",
}
AVOID = set()


# Breaking a well-formed template: syntax errors anywhere, runtime errors where they run.
SYNTAX_BREAKS = ["{% endif %}", "{% endfor %}", "{% else %}", "{% frobnicate %}", "{{ (1 + }}",
                 "{{ 'unterminated }}", "{% for in names %}{% endfor %}", "{{ }}", "{% set = 1 %}",
                 "{% if %}{% endif %}", "{{ x|nosuchfilter }}",
                 "{{ x is nosuchtest }}", "{% break %}", "{% macro %}{% endmacro %}", "{{ 1 + 2", "{% if true %}",
                 "{% for x in names %}", "{{ names[1:2:3:4] }}", "{{ a b }}", "{% endmacro %}", "{{ 'a' 'b' }}",
                 "{% for x in names %}{% generation %}{% break %}{% endgeneration %}{% endfor %}",
                 "{% set x %}", "{{ foo( }}", "{# unclosed comment", "{{ {'a' 1} }}", "{% elif true %}", "{{ .5x }}"]
RUNTIME_BREAKS = ["{{ raise_exception('Invalid role: ' ~ messages[0].role) }}", "{{ missing_var.attr }}",
                  "{{ 1 + 'a' }}",
                  "{{ names + 1 }}", "{{ 1 // 0 }}", "{{ 5 % 0 }}", "{{ x / 0 }}", "{{ cfg.nested.label.nope.deeper }}",
                  "{{ names() }}", "{{ nothing + 1 }}", "{{ messages[0].nope.x }}", "{{ 'abc' - 1 }}",
                  "{{ text.nosuchmethod() }}", "{{ n|first }}", "{{ undefined_macro() }}", "{{ names.append('z') }}",
                  "{{ cfg['missing'] + 1 }}", "{{ raise_exception('boom') }}", "{{ 'a' < 1 }}", "{{ [1] < 'a' }}",
                  "{% for a, b in names %}{% endfor %}", "{{ cfg.tags.items() }}", "{{ 'x' * 'y' }}",
                  "{{ messages|selectattr('role', 'nosuchtest')|list }}", "{{ n|join }}", "{{ missing|tojson }}",
                  "{% set q = namespace() %}{{ q.a.b }}", "{{ range(1, 2, 0)|list }}", "{{ -'a' }}", "{{ none() }}"]


def break_template(rng, pieces):
    pieces = list(pieces)
    syntax_breaks = [b for b in SYNTAX_BREAKS if "unknown-name" not in AVOID or "nosuch" not in b]
    if rng.random() < 0.5:
        ends = [i for i, (k, _) in enumerate(pieces) if k == "end"]
        if ends and rng.random() < 0.4:
            del pieces[rng.choice(ends)]
        else:
            pieces.insert(rng.randint(0, len(pieces)), ("tag", rng.choice(syntax_breaks)))
    else:
        # a top-level position: depth 0 where the tag count is balanced
        depth, positions = 0, [0]
        for i, (k, text) in enumerate(pieces):
            if k == "end":
                depth -= 1
            elif k == "tag" and any(text.lstrip("{%-+ \n").startswith(w) for w in ("if", "for", "macro", "generation")):
                depth += 1
            elif k == "tag" and text.lstrip("{%-+ \n").startswith("set") and "=" not in text:
                depth += 1
            if depth == 0:
                positions.append(i + 1)
        pieces.insert(rng.choice(positions), ("expr", rng.choice(RUNTIME_BREAKS)))
    return pieces


# ---------------------------------------------------------------- real chat templates

STRING_ARGUMENT_TEMPLATES = {"deepseek-v3"}  # tool-call arguments as a JSON string, not a dict
TOKENS = {  # (bos_token, eos_token) as each model's tokenizer_config.json; None: not passed
    "llama2": ("<s>", "</s>"), "llama3": ("<|begin_of_text|>", "<|eot_id|>"), "mistral": ("<s>", "</s>"),
    "mixtral": ("<s>", "</s>"), "qwen": (None, "<|im_end|>"),
    "deepseek": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "gemma": ("<bos>", "<eos>"), "phi3": ("<s>", "<|endoftext|>"), "phi4": ("<|endoftext|>", "<|im_end|>"),
    "smollm": ("<|im_start|>", "<|im_end|>"), "chatml": (None, None),
    "command": ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>"),
    "zephyr": ("<s>", "</s>"), "vicuna": ("<s>", "</s>"),
}


def load_real_templates(folder):
    if not folder or not os.path.isdir(folder):
        return {}
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".jinja"):
            with open(os.path.join(folder, name), encoding="utf-8", newline="") as fh:
                out[name[:-6]] = fh.read()
    return out


def real_case(rng, name, text):
    tools = None
    if name.endswith("-tool_use") or ("tool" in text and rng.random() < 0.5):
        tools = [rand_tool(rng, n) for n in rng.sample(["get_weather", "search", "calculator"], rng.randint(1, 2))]
    # Mostly conversations the template accepts; each rejection path is still taken sometimes.
    often = rng.random() < 0.9
    messages = rand_conversation(
        rng, tools or [], lo=1, hi=7, irregular=0.03,
        string_args=(name in STRING_ARGUMENT_TEMPLATES) == often,
        system=0.6 if ("system" in text and "System role not supported" not in text) or not often else 0.0,
        tool_turns="tool" in text or not often,
        list_content=any(w in text for w in ("content is string", "content is not string", "content[0]")) or not often,
        none_content="tool_calls" in text or not often)
    variables = {"messages": messages, "tools": tools, "documents": None, "add_generation_prompt": rng.random() < 0.6}
    if "documents" in text and rng.random() < 0.3:
        variables["documents"] = [{"title": rand_text(rng, 1, 3), "text": rand_text(rng, 1, 8)}
                                  for _ in range(rng.randint(1, 2))]
    family = next((f for f in TOKENS if name.startswith(f)), None)
    bos, eos = TOKENS.get(family, ("<s>", "</s>"))
    if bos is not None and rng.random() < 0.98:
        variables["bos_token"] = bos
    if eos is not None and rng.random() < 0.98:
        variables["eos_token"] = eos
    if "enable_thinking" in text and rng.random() < 0.6:
        variables["enable_thinking"] = rng.random() < 0.5
    for kwarg, value in (("builtin_tools", ["brave_search", "wolfram_alpha"]), ("tools_in_user_message", False),
                         ("date_string", "15 Jan 2026"), ("custom_tools", None)):
        if kwarg in text and rng.random() < 0.15:
            variables[kwarg] = value if kwarg != "custom_tools" else [rand_tool(rng)]
    return variables


# ---------------------------------------------------------------- cases


def make_case(seed, index, real_templates):
    """(template, variables, origin) for case `index` of `seed`: reproducible on its own."""
    rng = random.Random(f"{seed}/{index}")
    if real_templates and rng.random() < 0.3:
        name = rng.choice(sorted(real_templates))
        return real_templates[name], real_case(rng, name, real_templates[name]), f"real:{name}"
    pieces = TemplateGen(rng).generate()
    origin = "generated"
    if rng.random() < 0.12:
        pieces = break_template(rng, pieces)
        origin = "broken"
    return "".join(t for _, t in pieces), generated_variables(rng), origin


OPENERS = {"if", "for", "macro", "generation", "filter", "call"}


def block_structure(chunks):
    """(start, end, middles) of each {% if/for/... %} ... {% end... %} in a chunk list."""
    stack, out = [], []
    for i, c in enumerate(chunks):
        if not c.startswith("{%"):
            continue
        words = c[2:-2].strip("-+ \t\n").split()
        name = words[0] if words else ""
        if name in OPENERS or (name == "set" and "=" not in c):
            stack.append((i, []))
        elif name in ("elif", "else") and stack:
            stack[-1][1].append(i)
        elif name.startswith("end") and stack:
            begin, middles = stack.pop()
            out.append((begin, i, middles))
    return out


def reduce_case(template, variables, category, run_both, budget_s=20):
    """Shrinks a mismatching case while it stays a mismatch of the same category: drops
    whole blocks, keeps one branch of a block, drops single tags and text (ddmin), then
    drops list items and dict keys and halves strings in the variables."""
    import re

    deadline = time.time() + budget_s

    def still(t, v):
        if time.time() > deadline:
            return False
        result = compare(*run_both(t, v))
        return result is not None and result[0] == category

    chunks = [c for c in re.split(r"({%.*?%}|{{.*?}}|{#.*?#})", template, flags=re.S) if c]

    def candidates(chunks):
        for begin, end, middles in sorted(block_structure(chunks), key=lambda b: b[0] - b[1]):
            yield chunks[:begin] + chunks[end + 1:]
            bounds = [begin] + middles + [end]
            for a, b in zip(bounds, bounds[1:]):
                yield chunks[:begin] + chunks[a + 1:b] + chunks[end + 1:]
        size = len(chunks) // 2
        while size >= 1:
            for start in range(0, len(chunks), size):
                yield chunks[:start] + chunks[start + size:]
            size //= 2
        for i, c in enumerate(chunks):  # whitespace and text shrink to one character
            if not c.startswith(("{%", "{{", "{#")) and len(c) > 1:
                yield chunks[:i] + [c[: len(c) // 2]] + chunks[i + 1:]
                yield chunks[:i] + [c[len(c) // 2:]] + chunks[i + 1:]

    progress = True
    while progress and time.time() < deadline:
        progress = False
        for candidate in candidates(chunks):
            if candidate != chunks and still("".join(candidate), variables):
                chunks, progress = candidate, True
                break
    template = "".join(chunks)

    def shrink(value):  # smaller versions of value
        if isinstance(value, dict):
            for key in list(value):
                yield {k: v for k, v in value.items() if k != key}
            for key in list(value):
                for smaller in shrink(value[key]):
                    yield {**value, key: smaller}
        elif isinstance(value, list):
            for i in range(len(value)):
                yield value[:i] + value[i + 1:]
            for i in range(len(value)):
                for smaller in shrink(value[i]):
                    yield value[:i] + [smaller] + value[i + 1:]
        elif isinstance(value, str) and len(value) > 1:
            yield value[: len(value) // 2]
            yield value[len(value) // 2:]

    progress = True
    while progress and time.time() < deadline:
        progress = False
        for smaller in shrink(variables):
            if still(template, smaller):
                variables, progress = smaller, True
                break
    return template, variables


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--render", help="the render-template binary")
    parser.add_argument("--templates", help="folder of real chat templates (*.jinja); skipped when absent")
    parser.add_argument("--seconds", type=float, help="stop after this long (default 60 unless --cases)")
    parser.add_argument("--cases", type=int, help="stop after this many cases")
    parser.add_argument("--seed", type=int, help="default: random (printed)")
    parser.add_argument("--only-case", type=int, help="run just this case of --seed, printing it")
    parser.add_argument("--python-only", action="store_true", help="no C++: report how generated cases render")
    parser.add_argument("--avoid", action="append", default=[], choices=sorted(AVOID_CHOICES),
                        help="leave out a known difference while triaging: " +
                        "; ".join(f"{k}: {v}" for k, v in sorted(AVOID_CHOICES.items())).replace("%", "%%"))
    parser.add_argument("--strict-kinds", action="store_true", help="an error-kind group mismatch fails the run too")
    parser.add_argument("--max-report", type=int, default=5, help="python-only: failures printed (default 5)")
    parser.add_argument("--reduce-seconds", type=float, default=30, help="time spent shrinking mismatches (default 30)")
    parser.add_argument("--findings", help="append every mismatch (shrunk while the budget lasts) as JSON lines")
    parser.add_argument("--per-kind", type=int, default=3,
                        help="shrunk mismatches printed per (category, origin, error kinds); default 3")
    args = parser.parse_args()
    AVOID.update(args.avoid)
    if "float-divmod" in AVOID:
        FLOATS.remove(1e16)
    if "exotic-text" in AVOID:
        RARE_BITS.clear()
        for words in (WORDS, TEXT_BITS):
            words[:] = [w for w in words if w != "ΟΔΟΣ"]

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    seconds = args.seconds if args.seconds is not None else (None if args.cases else 60.0)
    real_templates = load_real_templates(args.templates)
    if args.templates and not real_templates:
        print(f"jinja differential: no templates in {args.templates}; generated templates only")

    renderer = None
    if not args.python_only:
        if not args.render or not os.access(args.render, os.X_OK):
            print(f"jinja differential: --render {args.render!r} is not an executable", file=sys.stderr)
            return 2
        renderer = Renderer(args.render)

    def run_both(template, variables):
        return py_render(template, variables), renderer.render(template, variables)

    if args.only_case is not None:
        template, variables, origin = make_case(seed, args.only_case, real_templates)
        print(f"seed {seed} case {args.only_case} ({origin})\n--- template\n{template}\n--- variables")
        print(json.dumps(variables, ensure_ascii=False, indent=1))
        py = py_render(template, variables)
        print(f"--- python jinja2: {describe(py)}")
        if renderer is not None:
            cc = renderer.render(template, variables)
            print(f"--- render-template: {describe(cc)}")
            renderer.close()
            return 1 if (compare(py, cc) or (None, False))[1] else 0
        return 0

    reduce_budget = [args.reduce_seconds]
    printed = {}  # (category, origin, error kinds) -> shrunk templates printed

    def report_mismatch(index, category, is_hard, origin, template, variables):
        """Prints up to --per-kind distinct shrunk cases of each kind of mismatch (shrinking
        while the --reduce-seconds budget lasts); --findings keeps every mismatch."""
        py, cc = run_both(template, variables)
        kind = (category, origin.split(":")[0], py[1] if py[0] == "err" else "", cc[1] if cc[0] == "err" else "")
        shown = printed.setdefault(kind, set())
        if len(shown) >= args.per_kind and not args.findings:
            return
        t, v = template, variables
        if reduce_budget[0] > 0:
            began = time.time()
            t, v = reduce_case(template, variables, category, run_both, budget_s=min(10, reduce_budget[0]))
            reduce_budget[0] -= time.time() - began
            py, cc = run_both(t, v)
        if args.findings:
            with open(args.findings, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"seed": seed, "case": index, "origin": origin, "category": category, "template": t,
                                     "variables": v, "python": list(py), "cpp": list(cc)}, ensure_ascii=False) + "\n")
        if len(shown) >= args.per_kind or t in shown:
            return
        shown.add(t)
        replay = f"--seed {seed} --only-case {index}" + "".join(" --avoid " + a for a in sorted(AVOID))
        title = "MISMATCH" if is_hard else "soft finding"
        print(f"\n=== {title} [{category}] case {index} ({origin})  replay: {replay}")
        print(f"--- template{' (reduced)' if t != template else ''}: {t!r}")
        print(f"--- variables{' (reduced)' if v != variables else ''}: {json.dumps(v, ensure_ascii=False)}")
        print(f"--- python jinja2:   {describe(py)}")
        print(f"--- render-template: {describe(cc)}")
        if py[0] == "ok" and cc[0] == "ok":
            print(minimal_diff(py[1], cc[1]))

    limits = ([f"{seconds:g} s"] if seconds else []) + ([f"{args.cases} cases"] if args.cases else [])
    print(f"jinja differential: seed {seed}, {len(real_templates)} real templates, {' / '.join(limits)}"
          + (f", avoiding {', '.join(sorted(AVOID))}" if AVOID else ""))
    start = time.time()
    stats = {"cases": 0, "compared": 0, "both_failed": 0, "py_failed_by_origin": {}, "by_origin": {}}
    templates = set()
    hard, soft = [], []
    messages_seen = {}
    index = 0
    while True:
        if args.cases is not None and index >= args.cases:
            break
        if seconds is not None and time.time() - start >= seconds:
            break
        template, variables, origin = make_case(seed, index, real_templates)
        templates.add(template)
        stats["cases"] += 1
        kind = origin.split(":")[0]
        stats["by_origin"][kind] = stats["by_origin"].get(kind, 0) + 1
        py = py_render(template, variables)
        if py[0] == "err":
            key = (kind, py[1])
            stats["py_failed_by_origin"][key] = stats["py_failed_by_origin"].get(key, 0) + 1
        if renderer is None:
            if py[0] == "err" and kind == "generated" and py[1] != "TemplateError":
                key = f"{py[1]}: {py[2].split(' (<template>')[0][:70]}"
                messages_seen[key] = messages_seen.get(key, 0) + 1
                if args.max_report > 0:
                    args.max_report -= 1
                    print(f"--- case {index}: well-formed template failed in Python: {py[1]}: {py[2]}\n{template}")
            index += 1
            continue
        cc = renderer.render(template, variables)
        if py[0] == "ok" and cc[0] == "ok":
            stats["compared"] += 1
        elif py[0] == "err" and cc[0] == "err":
            stats["both_failed"] += 1
        result = compare(py, cc)
        if result is not None:
            category, is_hard = result
            (hard if is_hard else soft).append((index, category, origin))
            report_mismatch(index, category, is_hard, origin, template, variables)
        index += 1
    if renderer is not None:
        renderer.close()
    elapsed = time.time() - start
    print(f"\norigins: {stats['by_origin']}; Python failures by (origin, kind): {stats['py_failed_by_origin']}")
    if renderer is None:
        for key, count in sorted(messages_seen.items(), key=lambda kv: -kv[1])[:25]:
            print(f"  {count:5d}  {key}")
        print(f"jinja differential (python only): {stats['cases']} cases ({len(templates)} templates) "
              f"in {elapsed:.1f} s")
        return 0
    summary = (f"jinja differential: {stats['cases']} cases ({len(templates)} templates), "
               f"{stats['compared']} outputs compared, {stats['both_failed']} both-failed, "
               f"{len(hard)} mismatches, {len(soft)} soft findings "
               f"(seed {seed}, {elapsed:.1f} s)")
    print(summary)
    if hard:
        cats = {}
        for _, c, _ in hard:
            cats[c] = cats.get(c, 0) + 1
        print(f"mismatch categories: {cats}; first cases: {[i for i, _, _ in hard[:20]]}")
    strict_soft = [c for _, c, _ in soft if c == "kind"] if args.strict_kinds else []
    return 1 if hard or strict_soft else 0


if __name__ == "__main__":
    sys.exit(main())
