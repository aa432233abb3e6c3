"""transformers' Jinja environment for chat templates, on Debian's python3-jinja2.

As transformers' utils/chat_template_utils.py::_compile_jinja_template (and
../shared/chat_templates/make_expected.py, which this copies to stay self-contained):
ImmutableSandboxedEnvironment(trim_blocks, lstrip_blocks, loopcontrols, `{% generation %}`),
`tojson` as json.dumps(ensure_ascii=False, ...), `raise_exception`, and `strftime_now` with
"now" frozen at FROZEN_NOW. Importing exits 77 (skipped) when python3-jinja2 is missing.
"""
import json
import sys
from datetime import datetime

try:
    import jinja2
    import jinja2.ext
    import jinja2.nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError as e:
    print(f"{sys.argv[0]}: skipped: python3-jinja2 is not installed ({e})")
    sys.exit(77)

FROZEN_NOW = datetime(2026, 1, 15, 12, 0, 0)


class AssistantTracker(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}`; inactive, the body renders unchanged."""

    tags = {"generation"}

    def __init__(self, environment):
        super().__init__(environment)
        self._rendered_blocks = None
        self._generation_indices = None

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    @jinja2.pass_eval_context
    def _generation_support(self, context, caller):
        rv = caller()
        if self._rendered_blocks or self._generation_indices:
            start = len("".join(self._rendered_blocks))
            self._generation_indices.append((start, start + len(rv)))
        return rv


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return FROZEN_NOW.strftime(format)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env
