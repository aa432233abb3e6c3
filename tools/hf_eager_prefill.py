#!/usr/bin/env python3
"""Times transformers' eager prefill of one prompt on a random-weight Llama-3-8B, in bf16.

The peer figure for engine_bench's BM_Prefill (scripts/gpu_check.sh runs both in one device
call). ../shared/peers/hf_eager.py measures the same prefill but then compiles a decode step,
which did not fit a device call's share; this runs only the prefill: a warm-up, then
--runs forward passes of --tokens random ids and the first token's argmax, each timed alone.
Writes hf_eager_prefill.json into $OUT (or --out).
"""
import argparse
import json
import os
import time

import torch
import transformers


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp"))
    args = ap.parse_args()
    config = transformers.LlamaConfig(
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
        rope_theta=500000.0)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = transformers.LlamaForCausalLM(config).eval()
    torch.set_default_dtype(torch.float32)
    times = []
    with torch.inference_mode():
        for run in range(args.runs + 1):
            ids = torch.randint(0, 128000, (1, args.tokens), device="cuda")
            torch.cuda.synchronize()
            start = time.perf_counter()
            model(ids, use_cache=True).logits[:, -1].argmax(-1).item()
            if run > 0:  # the first run warms up
                times.append(time.perf_counter() - start)
    times.sort()
    result = {"tokens": args.tokens, "runs": args.runs,
              "prefill_ms_median": 1e3 * times[len(times) // 2], "prefill_ms_min": 1e3 * times[0],
              "torch": torch.__version__, "transformers": transformers.__version__}
    print(json.dumps(result))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "hf_eager_prefill.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
