#!/usr/bin/env python3
"""Writes the tokenizer.json fixtures of tests/tokenizer/tokenizer_test.cc.

The vocabularies and merges are chosen by hand (below); the script only spells out the
256 byte tokens and writes the JSON. Run from this directory: python3 make_fixtures.py
"""
import json

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def gpt2_byte_chars():
    """GPT-2's bytes_to_unicode, as (byte, char) in vocabulary order."""
    own = (list(range(ord('!'), ord('~') + 1)) + list(range(0xA1, 0xAD)) +
           list(range(0xAE, 0x100)))
    out = [(b, chr(b)) for b in own]
    n = 0
    for b in range(256):
        if b not in own:
            out.append((b, chr(256 + n)))
            n += 1
    return out


def byte_level():
    vocab = {c: i for i, (_, c) in enumerate(gpt2_byte_chars())}
    merges = ["Ġ t", "l l", "e ll", "h e", "h ell", "hell o", "Ġt he", "Ġ w", "o r", "Ġw or",
              "Ġwor l", "Ġworl d", "' s", "1 2", "12 3", "Ċ Ċ", "Ġ Ġ"]
    for m in merges:
        vocab[m.replace(' ', '')] = len(vocab)          # ids 256..272
    vocab["Ġhello"] = len(vocab)                        # 273: no merge makes it
    added = [(274, "<|begin_of_text|>", True), (275, "<|end_of_text|>", True),
             (276, "<|eot_id|>", True), (277, "[citation]", False)]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": c, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": s}
                         for i, c, s in added],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
             "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                      {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                      {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": {
                 "id": "<|begin_of_text|>", "ids": [274], "tokens": ["<|begin_of_text|>"]}}}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": [m.split(' ') for m in merges]},
    }


def metaspace():
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)               # ids 3..258
    for c in ["▁", "h", "e", "l", "o", "w", "r", "d", "t", "a", "s", "i", "n"]:
        vocab[c] = len(vocab)                            # ids 259..271
    merges = ["l l", "▁ h", "e ll", "▁h ell", "▁hell o", "▁ w", "o r", "▁w or", "l d",
              "▁wor ld", "▁ ▁", "i n", "▁ a"]
    for m in merges:
        vocab[m.replace(' ', '')] = len(vocab)           # ids 272..284
    added = [(0, "<unk>", True), (1, "<s>", True), (2, "</s>", True), (285, "[INST]", True)]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": c, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": s}
                         for i, c, s in added],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "vocab": vocab, "merges": merges},
    }


for name, spec in [("llama3_style_tokenizer.json", byte_level()),
                   ("llama2_style_tokenizer.json", metaspace())]:
    with open(name, "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False, indent=1)
        f.write("\n")
