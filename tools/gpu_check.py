#!/usr/bin/env python3
"""scripts/gpu_check.sh's helpers: what the machine has, and the summary of a run's figures.

  tools/gpu_check.py machine OUT BACKEND   writes OUT/machine.json (GPU, driver, CUDA,
                                           torch/transformers, profilers) and prints it
  tools/gpu_check.py summary OUT           reads every figure under OUT, prints the summary
                                           with the aims of issue 15, writes OUT/summary.json

Only the standard library: it runs on the GPU machine's python3 and on Debian's.
"""
import glob
import json
import os
import shutil
import subprocess
import sys


def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine(out, backend):
    nvcc = run("nvcc", "--version")
    m = {
        "backend": backend,
        "cpus": os.cpu_count(),
        "gpu": run("nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                   "--format=csv,noheader") or None,
        "cuda": nvcc.splitlines()[-1] if nvcc else None,
        "torch_transformers": run("python3", "-c", "import torch, transformers; "
                                  "print(torch.__version__, transformers.__version__)") or None,
        "nsys": shutil.which("nsys") or next(iter(glob.glob(
            "/opt/nvidia/nsight-systems/*/bin/nsys") + glob.glob("/usr/local/cuda*/bin/nsys")),
            None),
        "compute_sanitizer": shutil.which("compute-sanitizer"),
    }
    with open(os.path.join(out, "machine.json"), "w") as f:
        json.dump(m, f, indent=1)
    print(json.dumps(m, indent=1))


def load(out, name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def benchmarks(report):
    """Google Benchmark JSON -> {name: entry} (aggregates left out)."""
    if not report:
        return {}
    return {b["name"]: b for b in report.get("benchmarks", []) if b.get("run_type") != "aggregate"}


def ms(entry):
    """An entry's time in milliseconds, whatever its unit."""
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[entry.get("time_unit", "ns")]
    return entry["real_time"] * scale


def gtest(report):
    """A gtest JSON report -> counts, and the properties its tests recorded."""
    if not report:
        return None
    counts = {"tests": 0, "failed": 0, "skipped": 0}
    properties = {}
    standard = {"name", "file", "line", "status", "result", "timestamp", "time", "classname",
                "failures", "value_param", "type_param"}
    for suite in report.get("testsuites", []):
        for case in suite.get("testsuite", []):
            counts["tests"] += 1
            counts["failed"] += bool(case.get("failures"))
            counts["skipped"] += case.get("result") == "SKIPPED"
            for key, value in case.items():
                if key not in standard:
                    properties[key] = value
    return {"counts": counts, "properties": properties}


def summary(out):
    s = {"machine": load(out, "machine.json"), "steps": []}
    try:
        with open(os.path.join(out, "steps.jsonl")) as f:
            s["steps"] = [json.loads(line) for line in f if line.strip()]
    except OSError:
        pass
    aims = []

    copy = benchmarks(load(out, "copy_bw.json"))
    bw = next((b["GB/s"] * 1e9 for b in copy.values() if "GB/s" in b), None)
    s["copy_bytes_per_s"] = bw

    bench = benchmarks(load(out, "engine_bench.json"))
    decode = {}
    for name, b in bench.items():
        if name.startswith("BM_Decode/batch:"):
            batch = int(name.split(":")[1].split("/")[0])
            d = {"tokens_per_s": b["tokens_per_second"], "step_ms": b["step_ms"],
                 "graph_replays_per_step": b.get("graph_replays_per_step", 0)}
            if bw and "weight_bytes" in b:
                context = b["context"] + b.get("new_tokens", 0) / 2  # the run's average
                step_bytes = b["weight_bytes"] + batch * context * b["kv_bytes_per_token"]
                d["bound_step_ms"] = 1e3 * step_bytes / bw
                d["pct_of_bound"] = 100 * d["bound_step_ms"] / b["step_ms"] if b["step_ms"] else 0
            decode[batch] = d
    s["decode"] = decode
    for name, b in bench.items():
        if name.startswith("BM_Prefill"):
            s["prefill_ms"] = ms(b)
        elif name.startswith("BM_TimeToFirstToken/hit:"):
            s.setdefault("ttft_ms", {})["hit" if "hit:1" in name else "miss"] = ms(b)
        elif name.startswith("BM_ReturningConversation/from:"):
            s.setdefault("returning_ms", {})[b.get("label", name)] = ms(b)
            if b.get("label") == "host":
                s["promoted_bytes_per_turn"] = b.get("promoted_bytes_per_turn")
    r = s.get("returning_ms", {})
    if {"host", "device", "recompute"} <= r.keys():
        extra_s = (r["host"] - r["device"]) / 1e3
        if extra_s > 0 and s.get("promoted_bytes_per_turn"):
            s["promotion_GB_per_s"] = s["promoted_bytes_per_turn"] / extra_s / 1e9
        s["returning_recompute_over_host"] = r["recompute"] / r["host"]
        aims.append(("returning conversation: promoted >= 5x faster than recomputed",
                     s["returning_recompute_over_host"] >= 5,
                     f"{s['returning_recompute_over_host']:.1f}x"))

    for name, b in benchmarks(load(out, "engine_bench_nographs.json")).items():
        batch = int(name.split(":")[1].split("/")[0]) if name.startswith("BM_Decode/batch:") else 0
        if batch in decode:
            decode[batch]["without_graphs_tokens_per_s"] = b["tokens_per_second"]
            decode[batch]["graphs_speedup"] = decode[batch]["tokens_per_s"] / b["tokens_per_second"]

    compiled = load(out, "hf_compiled.json") or {}
    for batch, aim in ((1, 1.25), (16, 1.5)):
        peer = compiled.get(f"bs{batch}_decode_tok_s")
        if peer and batch in decode:
            ratio = decode[batch]["tokens_per_s"] / peer
            decode[batch]["vs_compiled_transformers"] = ratio
            aims.append((f"decode batch {batch} >= {aim}x compiled transformers", ratio >= aim,
                         f"{ratio:.2f}x ({decode[batch]['tokens_per_s']:.1f} vs {peer:.1f} tok/s)"))
    if 1 in decode and "pct_of_bound" in decode[1]:
        aims.append(("decode batch 1 >= 85 % of the bandwidth bound",
                     decode[1]["pct_of_bound"] >= 85, f"{decode[1]['pct_of_bound']:.1f} %"))
    eager = load(out, "hf_eager_prefill.json")
    if eager and "prefill_ms" in s:
        s["prefill_vs_eager"] = s["prefill_ms"] / eager["prefill_ms_median"]
        aims.append(("prefill of 2048 tokens not slower than transformers eager",
                     s["prefill_ms"] <= eager["prefill_ms_median"],
                     f"{s['prefill_ms']:.1f} vs {eager['prefill_ms_median']:.1f} ms"))

    cascade = {}
    for name, b in benchmarks(load(out, "cascade_bench.json")).items():
        args = name.split("/")  # BM_CascadeDecodeAttention/seqs/prefix/own/cascade/...
        if len(args) >= 5:
            cascade.setdefault(int(args[1]), {})[b.get("label", args[4])] = ms(b)
    for seqs, t in sorted(cascade.items()):
        if {"plain", "cascade"} <= t.keys():
            t["speedup"] = t["plain"] / t["cascade"]
    s["cascade_attention_ms"] = cascade
    if 256 in cascade and "speedup" in cascade[256]:
        aims.append(("decode attention, 256 x (2048 shared + 128): cascade >= 3x faster",
                     cascade[256]["speedup"] >= 3,
                     f"{cascade[256]['speedup']:.2f}x ({cascade[256]['plain'] * 1e3:.0f} vs "
                     f"{cascade[256]['cascade'] * 1e3:.0f} us)"))

    chat = load(out, "chatbot.json")
    if chat:
        s["chatbot"] = chat
        aims.append(("chatbot workload: cache on >= 3x the output throughput of cache off",
                     chat["throughput_ratio_cache_vs_off"] >= 3,
                     f"{chat['throughput_ratio_cache_vs_off']:.2f}x"))
        aims.append(("chatbot workload: hit rate >= 98 % of the ideal",
                     chat["hit_rate_of_ideal"] >= 0.98, f"{chat['hit_rate_of_ideal']:.1%}"))
        aims.append(("0 % hits: the cache costs <= 1 % throughput",
                     chat["distinct_throughput_ratio"] >= 0.99,
                     f"{chat['distinct_throughput_ratio']:.3f}x cache off's"))
        p128 = next(iter(benchmarks(load(out, "prefill_128.json")).values()), None)
        if p128:
            ttft = chat["runs"]["cache"]["ttft_p50_ms"]
            aims.append(("chatbot workload: TTFT p50 <= 1.3x a 128-token prefill alone",
                         ttft <= 1.3 * ms(p128), f"{ttft:.1f} vs {ms(p128):.1f} ms"))

    abuse = load(out, "tenant_abuse_report.json")
    if abuse:
        normal = abuse["normal"]
        s["tenant_abuse"] = abuse
        aims.append(("tenants: the normal tenant's p99 TTFT under abuse within 2x its own",
                     normal["ttft_p99_ratio"] <= 2,
                     f"{normal['ttft_p99_ratio']:.2f}x ({normal['ttft_p99_ms_under_abuse']:.1f} vs "
                     f"{normal['ttft_p99_ms_alone']:.1f} ms)"))

    s["tests"] = {name: gtest(load(out, f"{name}.json")) for name in ("kernel_tests",
                                                                        "engine_tests")}
    props = (s["tests"].get("engine_tests") or {}).get("properties", {})
    for key, value in sorted(props.items()):
        if key.endswith("_cuda_error_ratio"):
            aims.append((f"{key[:-len('_cuda_error_ratio')]}: largest logprob error <= 1.5x "
                         "transformers bf16's", float(value) <= 1.5, f"{float(value):.2f}x"))

    nsys_log = os.path.join(out, "nsys.log")
    if os.path.exists(nsys_log):
        with open(nsys_log, errors="replace") as f:
            text = f.read()
        at = text.find("cuda_gpu_kern_sum")
        s["nsys_kernels"] = text[at:at + 4000].splitlines()[:24] if at >= 0 else []

    s["aims"] = [{"aim": a, "met": met, "figure": fig} for a, met, fig in aims]
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(s, f, indent=1)

    m = s["machine"] or {}
    print(f"\n== gpu_check summary ({m.get('backend')}) ==")
    print(f"machine: {m.get('gpu') or 'no GPU'}; {m.get('cuda') or 'no nvcc'}; "
          f"torch/transformers {m.get('torch_transformers') or 'absent'}")
    if bw:
        print(f"device copy: {bw / 1e12:.2f} TB/s (read + write): the bound below")
    for st in s["steps"]:
        print(f"  {st['step']:<14} {st['status']:<8} {st['seconds']:>6.1f} s  {st['note'][:90]}")
    for batch, d in sorted(decode.items()):
        line = f"decode batch {batch:>3}: {d['tokens_per_s']:9.1f} tok/s, {d['step_ms']:.2f} ms/step"
        if "pct_of_bound" in d:
            line += f", {d['pct_of_bound']:.0f} % of the bound ({d['bound_step_ms']:.2f} ms)"
        line += f", {d['graph_replays_per_step']:.0%} of steps replayed a graph"
        if "graphs_speedup" in d:
            line += f", {d['graphs_speedup']:.2f}x the speed without CUDA graphs"
        if "vs_compiled_transformers" in d:
            line += f", {d['vs_compiled_transformers']:.2f}x compiled transformers"
        print(line)
    if "prefill_ms" in s:
        print(f"prefill: {s['prefill_ms']:.1f} ms" + (
            f" ({s['prefill_vs_eager']:.2f}x transformers eager's time)"
            if "prefill_vs_eager" in s else ""))
    if "ttft_ms" in s:
        print(f"time to first token: miss {s['ttft_ms'].get('miss', 0):.1f} ms, "
              f"hit {s['ttft_ms'].get('hit', 0):.1f} ms")
    if r:
        print("returning conversation: " + ", ".join(f"{k} {v:.1f} ms" for k, v in r.items()) + (
            f"; promotion {s['promotion_GB_per_s']:.1f} GB/s" if "promotion_GB_per_s" in s
            else ""))
    if chat:
        for name, r in chat["runs"].items():
            print(f"chatbot {name:18} hit {r['hit_rate']:6.1%} (ideal {r['ideal_hit_rate']:.1%}), "
                  f"{r['output_tokens_per_s']:8.1f} tok/s, TTFT p50 {r['ttft_p50_ms']:.1f} ms, "
                  f"blocks in use <= {r['max_blocks_in_use']}, cached <= {r['max_blocks_cached']}"
                  + (f", peak {r['peak_device_memory_mib']} MiB"
                     if "peak_device_memory_mib" in r else "")
                  + (f", KV {r['kv_capacity_tokens']} tokens" if "kv_capacity_tokens" in r
                     else ""))
    for name, t in s["tests"].items():
        if t:
            c = t["counts"]
            print(f"{name}: {c['tests']} tests, {c['failed']} failed, {c['skipped']} skipped")
    for key, value in sorted(props.items()):
        print(f"  {key} = {value}")
    for a in s["aims"]:
        print(f"aim {'MET   ' if a['met'] else 'MISSED'} {a['aim']}: {a['figure']}")
    print(f"gpu_check: wrote {os.path.join(out, 'summary.json')}")
    return 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "machine":
        return machine(sys.argv[2], sys.argv[3])
    if len(sys.argv) == 3 and sys.argv[1] == "summary":
        return summary(sys.argv[2])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
