#!/usr/bin/python3
"""Renders conversations with a model folder's chat template as transformers'
apply_chat_template does (tokenize=False), with Debian's python3-jinja2.

usage: hf_chat_render.py MODEL_DIR < cases.json > rendered.json

cases.json: [{"messages": [...], "add_generation_prompt": true, "tools": null, ...}, ...]
rendered.json: [{"text": "..."} or {"error": "<Exception>: <message>"}, ...], in order.

The template is tokenizer_config.json's "chat_template" (a string, or a list of named
templates: "default", "tool_use" when tools are given) or chat_template.jinja; the special
tokens of tokenizer_config.json ("bos_token", ... as strings or {"content": ...}) are
variables, as transformers passes them.
"""
import json
import os
import sys

from hf_jinja_env import make_env  # exits 77 without python3-jinja2


def load_template(model_dir, config, with_tools):
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t["name"]: t["template"] for t in template}
        template = named.get("tool_use" if with_tools and "tool_use" in named else "default")
    if template is None:
        path = os.path.join(model_dir, "chat_template.jinja")
        with open(path, encoding="utf-8") as f:
            template = f.read()
    return template


def special_tokens(config):
    tokens = {}
    for key, value in config.items():
        if key.endswith("_token") and value is not None:
            tokens[key] = value["content"] if isinstance(value, dict) else value
    return tokens


def main():
    model_dir = sys.argv[1]
    with open(os.path.join(model_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    env = make_env()
    out = []
    for case in json.load(sys.stdin):
        case = dict(case)
        tools = case.pop("tools", None)
        variables = {"messages": case.pop("messages"), "tools": tools, "documents": None,
                     "add_generation_prompt": case.pop("add_generation_prompt", False)}
        variables.update(special_tokens(config))
        variables.update(case)  # template kwargs
        try:
            template = env.from_string(load_template(model_dir, config, tools is not None))
            out.append({"text": template.render(**variables)})
        except Exception as e:  # noqa: BLE001 - reported to the caller
            out.append({"error": f"{type(e).__name__}: {e}"})
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
