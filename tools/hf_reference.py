#!/usr/bin/env python3
"""Writes a random-weight Hugging Face model and transformers' own greedy outputs for it.

Runs where PyTorch and transformers are installed (the GPU machine). For each --arch it
builds a LlamaForCausalLM or Qwen2ForCausalLM from a config with random weights: llama
has GQA and llama3 RoPE scaling, llama-head-dim a head_dim that is not hidden / heads, qwen2
tied embeddings and random q/k/v biases. It saves the model with save_pretrained (bf16
safetensors), reloads those bf16 weights into fp32, and greedily
generates --new_tokens tokens for --prompts random prompts, recording each step's chosen
token, its logprob and the top 5 alternatives. Then, to show how far transformers' own bf16
lands from its fp32, the bf16 model reads the same path (teacher forcing: the prompt and the
fp32 run's tokens in one pass) and gives, at every step, its logprobs of the fp32 run's top
5 and its own first choice. The CUDA engine test reads them:

  python3 tools/hf_reference.py --out /tmp/hf --arch llama qwen2
  PREFIXD_HF_REFERENCE=/tmp/hf/llama:/tmp/hf/qwen2 build/tests/engine/cuda_engine_test

Shapes are small real ones (a few hundred million parameters at most) so the reference
is exact fp32 and quick; weights are drawn with std --init_std so logits have a spread
that greedy decoding can follow (the default 0.02 gives near-uniform logits, where every
step is a tie).
"""
import argparse
import json
import os
import sys

import torch
import transformers


def build(arch, init_std):
    common = dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=6,
                  num_attention_heads=16, num_key_value_heads=4, vocab_size=32000,
                  max_position_embeddings=4096, rms_norm_eps=1e-5,
                  initializer_range=init_std, bos_token_id=1, eos_token_id=2)
    v5 = int(transformers.__version__.split(".")[0]) >= 5

    def rope(theta, scaling=None):
        # transformers v5 keeps theta and scaling together in rope_parameters.
        if v5:
            return {"rope_parameters": dict(scaling or {"rope_type": "default"},
                                            rope_theta=theta)}
        return dict(rope_theta=theta, **({"rope_scaling": scaling} if scaling else {}))

    if arch == "llama":
        config = transformers.LlamaConfig(
            tie_word_embeddings=False, **common,
            **rope(500000.0, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 1024}))
        model = transformers.LlamaForCausalLM(config)
    elif arch == "llama-head-dim":
        # head_dim 128 where hidden / heads is 64: q/k/v and o are not square to the hidden.
        config = transformers.LlamaConfig(tie_word_embeddings=False, head_dim=128, **common,
                                          **rope(10000.0))
        model = transformers.LlamaForCausalLM(config)
    elif arch == "qwen2":
        config = transformers.Qwen2Config(tie_word_embeddings=True, **common,
                                          **rope(1000000.0))
        model = transformers.Qwen2ForCausalLM(config)
    else:
        sys.exit(f"hf_reference: unknown --arch {arch} (llama, llama-head-dim or qwen2)")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0.0, init_std)
            elif "norm" in name:
                p.uniform_(0.8, 1.2)  # not all ones: a wrong norm weight would show
    return model


def greedy(model, prompt, new_tokens, device):
    """Greedy tokens and, per step, the chosen token's logprob and the top 5 (fp64 softmax)."""
    steps, tokens = [], []
    with torch.no_grad():
        out = model(torch.tensor([prompt], device=device), use_cache=True)
        for _ in range(new_tokens):
            logprobs = torch.log_softmax(out.logits[0, -1].double(), dim=-1)
            top = torch.topk(logprobs, 5)
            token = int(top.indices[0])
            steps.append({"logprob": float(top.values[0]),
                          "top": [[int(t), float(v)] for t, v in
                                  zip(top.indices.tolist(), top.values.tolist())]})
            tokens.append(token)
            out = model(torch.tensor([[token]], device=device),
                        past_key_values=out.past_key_values, use_cache=True)
    return tokens, steps


def forced(model, prompt, tokens, steps, device):
    """Along a reference's greedy path (its tokens fed back, one pass): per step, this model's
    logprobs of the reference's top 5 (fp64 softmax) and its own first choice."""
    with torch.no_grad():
        ids = torch.tensor([prompt + tokens[:-1]], device=device)
        logits = model(ids).logits[0, len(prompt) - 1:]
        logprobs = torch.log_softmax(logits.double(), dim=-1)
    return [{"top": [float(logprobs[k, t]) for t, _ in step["top"]],
             "argmax": int(logprobs[k].argmax())} for k, step in enumerate(steps)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder to write <arch>/ into")
    ap.add_argument("--arch", nargs="+", default=["llama", "llama-head-dim", "qwen2"])
    ap.add_argument("--prompts", type=int, default=12)
    ap.add_argument("--new_tokens", type=int, default=32)
    ap.add_argument("--init_std", type=float, default=0.06)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for arch in args.arch:
        torch.manual_seed(args.seed)
        folder = os.path.join(args.out, arch)
        model = build(arch, args.init_std).to(torch.bfloat16)
        model.save_pretrained(folder)  # safetensors
        gen = torch.Generator().manual_seed(args.seed + 1)
        prompts = [torch.randint(3, model.config.vocab_size, (5 + 37 * i,), generator=gen).tolist()
                   for i in range(args.prompts)]
        # The reference: the saved bf16 weights, computed in fp32; and, for scale, what
        # transformers itself gets computing in bf16.
        fp32 = [greedy(model.to(device=device, dtype=torch.float32).eval(), p, args.new_tokens,
                       device) for p in prompts]
        bf16_model = model.to(device=device, dtype=torch.bfloat16).eval()
        bf16 = [forced(bf16_model, p, f[0], f[1], device) for p, f in zip(prompts, fp32)]
        cases = [{"prompt": p, "tokens": f[0], "steps": f[1], "bf16_forced": b}
                 for p, f, b in zip(prompts, fp32, bf16)]
        with open(os.path.join(folder, "reference.json"), "w") as f:
            json.dump({"arch": arch, "dtype": "float32 compute over bf16 weights (bf16_forced: "
                       "bf16 compute along the fp32 path)", "cases": cases}, f)
        print(f"hf_reference: wrote {folder} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}"
              f" M parameters, {args.prompts} prompts × {args.new_tokens} tokens)")


if __name__ == "__main__":
    main()
