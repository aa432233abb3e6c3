#!/usr/bin/env python3
"""Writes the seed corpora of the file and request fuzz targets (tests/fuzz/corpus/<name>/).

Each seed is a small valid input (so the fuzzer starts from the accepted format) or a
near-miss the reader must refuse. Run from the repository root:
    python3 tests/fuzz/make_file_corpora.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.join(HERE, "..", "engine", "testdata")


def put(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None, pad=True):
    header, offset, data = {}, 0, b""
    for name, (dtype, shape, payload) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [offset, offset + len(payload)]}
        offset += len(payload)
        data += payload
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


put("safetensors", "empty", safetensors({}))
put("safetensors", "f32", safetensors({"w": ("F32", [2, 3], struct.pack("<6f", *range(6)))}))
put("safetensors", "mixed", safetensors({
    "a": ("BF16", [4], b"\x80\x3f" * 4),
    "b": ("F16", [2, 2], b"\x00\x3c" * 4),
    "c": ("F32", [1], struct.pack("<f", 1.5)),
}, metadata={"format": "pt"}))
put("safetensors", "truncated", safetensors({"w": ("F32", [8], b"\0" * 32)})[:-4])
put("safetensors", "bad_dtype", safetensors({"w": ("F64", [1], b"\0" * 8)}))

llama = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 512,
    "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4,
    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 32, "hidden_act": "silu",
    "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 1024},
    "max_position_embeddings": 4096, "tie_word_embeddings": True, "bos_token_id": 504,
    "eos_token_id": 505, "torch_dtype": "bfloat16"}
put("model_config", "llama3", json.dumps(llama, indent=1))
v5 = dict(llama)
del v5["rope_theta"], v5["rope_scaling"], v5["torch_dtype"]
v5["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0}
v5["dtype"] = "bfloat16"
put("model_config", "v5_rope_parameters", json.dumps(v5))
qwen = dict(llama, architectures=["Qwen2ForCausalLM"], model_type="qwen2", eos_token_id=[1, 2])
del qwen["rope_scaling"]
put("model_config", "qwen2", json.dumps(qwen))
mistral = dict(llama, architectures=["MistralForCausalLM"], model_type="mistral",
               sliding_window=2048)
put("model_config", "mistral", json.dumps(mistral))
put("model_config", "bad_heads", json.dumps(dict(llama, num_key_value_heads=3)))

for name in ("llama3_style_tokenizer.json", "llama2_style_tokenizer.json"):
    with open(os.path.join(TESTDATA, name), "rb") as f:
        put("tokenizer", "json_" + name.split("_")[0], b"\x00" + f.read())
for i, text in enumerate(["Hello, world! It's 2026.", " two  spaces\n\nand\ttabs",
                          "caf\u00e9 \U0001F600 \u4e2d\u6587", "\xff\xfe\x80 raw bytes"]):
    put("tokenizer", "text_%d" % i, b"\x01" + text.encode("utf-8", "surrogateescape"))

put("tokens_file", "two_tenants", json.dumps({"tenants": [
    {"name": "alice", "tokens": ["alice-token-0123456789"], "shared_namespaces": ["public"]},
    {"name": "root", "tokens": ["root-token-0123456789ab"], "admin": True}]}))
put("tokens_file", "duplicate_token", json.dumps({"tenants": [
    {"name": "a", "tokens": ["same-token-0123456789"]},
    {"name": "b", "tokens": ["same-token-0123456789"]}]}))


def varint(n):
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def field(number, wire, payload):
    key = varint((number << 3) | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


# GenerateRequest: text=1, token_ids=2 (TokenIds.ids=1 packed), sampling=3, logprobs=4.
ids = b"".join(varint(i) for i in [1, 2, 3, 40, 500])
sampling = (field(1, 5, struct.pack("<f", 0.7)) + field(2, 0, varint(5)) +
            field(3, 5, struct.pack("<f", 0.9)) + field(4, 0, varint(42)) +
            field(5, 0, varint(16)) + field(6, 2, b"\n\n") + field(7, 0, varint(505)))
put("generate_request", "token_ids", field(2, 2, field(1, 2, ids)) + field(3, 2, sampling))
put("generate_request", "text", field(1, 2, "Tell me about rivers.".encode()) +
    field(4, 2, field(1, 0, varint(1)) + field(2, 0, varint(5))))
put("generate_request", "bad_top_p", field(1, 2, b"hi") + field(3, 2, field(3, 5, struct.pack("<f", 1.5))))
