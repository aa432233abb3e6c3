#!/usr/bin/python3
"""A small Python client for prefixd, and an example of calling its gRPC API.

Run it with Debian's interpreter (it has python3-grpcio) from the build folder, where CMake
generates the stubs next to a copy of this file:

    /usr/bin/python3 build/clients/python/prefixd_client.py generate Once upon a time
    /usr/bin/python3 build/clients/python/prefixd_client.py --max-tokens 16 generate Hello
    /usr/bin/python3 build/clients/python/prefixd_client.py stats

`generate` prints the text to stdout as it streams in, then the usage (prompt tokens, how
many were served from the prefix cache, completion tokens, timings) to stderr. As a library:

    with PrefixdClient("127.0.0.1:50051") as client:
        for response in client.generate("Hello", max_tokens=16, temperature=0):
            print(response.text, end="", flush=True)
        print(response.usage.cached_tokens)   # the last message carries the usage

Exit codes: 0 success, 1 server error, 2 usage error, 3 server unavailable.
"""

import argparse
import os
import sys

# The stubs live next to this file in the build folder; PREFIXD_PYTHON_STUBS may point
# elsewhere (e.g. when running the copy in the source tree).
if os.environ.get("PREFIXD_PYTHON_STUBS"):
    sys.path.insert(0, os.environ["PREFIXD_PYTHON_STUBS"])

try:
    import grpc
    from prefixd.v1 import cache_pb2, cache_pb2_grpc, generation_pb2, generation_pb2_grpc
except ImportError as error:  # pragma: no cover - depends on the installation
    sys.stderr.write(
        f"prefixd_client: {error}\n"
        "Run the copy in <build>/clients/python/ with /usr/bin/python3 (python3-grpcio), or set\n"
        "PREFIXD_PYTHON_STUBS to the folder holding the generated prefixd/v1/*_pb2.py.\n")
    sys.exit(2)

EXIT_SERVER_ERROR = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

FINISH_REASONS = {
    generation_pb2.FINISH_REASON_STOP: "stop",
    generation_pb2.FINISH_REASON_LENGTH: "length",
    generation_pb2.FINISH_REASON_CANCELLED: "cancelled",
}


class PrefixdClient:
    """prefixd's Generation and Cache services over one channel."""

    def __init__(self, target="127.0.0.1:50051", token=None, timeout=None):
        """token: sent as `authorization: Bearer <token>`; timeout: seconds per call."""
        self._channel = grpc.insecure_channel(target)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout
        self._generation = generation_pb2_grpc.GenerationStub(self._channel)
        self._cache = cache_pb2_grpc.CacheStub(self._channel)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._channel.close()

    def generate(self, prompt=None, token_ids=None, max_tokens=0, temperature=None, top_k=0,
                 top_p=None, seed=None, stop=(), ignore_eos=False, request_id=""):
        """Streams GenerateResponse messages; the last one has finish_reason and usage.

        Give the prompt as text (`prompt`) or as token ids (`token_ids`). Iterating may
        raise grpc.RpcError (e.g. INVALID_ARGUMENT, UNAVAILABLE); `.cancel()` on the
        returned iterator cancels the request.
        """
        request = generation_pb2.GenerateRequest(request_id=request_id)
        if token_ids is not None:
            request.token_ids.ids.extend(token_ids)
        else:
            request.text = prompt
        sampling = request.sampling
        sampling.max_tokens = max_tokens
        sampling.top_k = top_k
        sampling.ignore_eos = ignore_eos
        sampling.stop.extend(stop)
        # Optional fields: left unset they keep the server's defaults.
        if temperature is not None:
            sampling.temperature = temperature
        if top_p is not None:
            sampling.top_p = top_p
        if seed is not None:
            sampling.seed = seed
        return self._generation.Generate(request, timeout=self._timeout,
                                         metadata=self._metadata)

    def stats(self):
        """The CacheStats message: hit rate, blocks by state, per-namespace counters."""
        return self._cache.GetStats(cache_pb2.GetStatsRequest(), timeout=self._timeout,
                                    metadata=self._metadata)


def format_usage(finish_reason, usage):
    cached_share = (100.0 * usage.cached_tokens / usage.prompt_tokens
                    if usage.prompt_tokens else 0.0)
    return (f"finish {FINISH_REASONS.get(finish_reason, 'unknown')} | "
            f"prompt_tokens {usage.prompt_tokens} | "
            f"cached_tokens {usage.cached_tokens} ({cached_share:.1f}%) | "
            f"completion_tokens {usage.completion_tokens} | "
            f"first token {usage.time_to_first_token_seconds * 1e3:.1f} ms | "
            f"total {usage.total_seconds * 1e3:.1f} ms")


def format_stats(stats):
    b = stats.blocks
    lines = [
        f"hit rate {100.0 * stats.hit_rate:.1f}% "
        f"({stats.hit_tokens} of {stats.query_tokens} prompt tokens)",
        f"blocks   {b.total} total: {b.free} free, {b.evictable} evictable, "
        f"{b.in_use} in use ({b.pinned} pinned)",
        f"requests {stats.running_requests} running, {stats.waiting_requests} waiting",
    ]
    for ns in stats.namespaces:
        lines.append(f"namespace {ns.name or '(default)'}: {ns.hit_tokens}/{ns.query_tokens} "
                     f"tokens hit ({100.0 * ns.hit_rate:.1f}%), {ns.cached_blocks} blocks")
    return "\n".join(lines)


def run_generate(client, args):
    if args.token_ids:
        try:
            ids = [int(part) for part in args.token_ids.split(",")]
        except ValueError:
            sys.stderr.write("prefixd_client: --token-ids wants e.g. 1,2,3\n")
            return EXIT_USAGE
        stream = client.generate(token_ids=ids, max_tokens=args.max_tokens,
                                 temperature=args.temperature, seed=args.seed,
                                 ignore_eos=args.ignore_eos)
    else:
        if not args.prompt:
            sys.stderr.write("prefixd_client: no prompt\n")
            return EXIT_USAGE
        stream = client.generate(prompt=" ".join(args.prompt), max_tokens=args.max_tokens,
                                 temperature=args.temperature, seed=args.seed,
                                 ignore_eos=args.ignore_eos)
    last = None
    for response in stream:
        sys.stdout.write(response.text)
        sys.stdout.flush()
        last = response
    sys.stdout.write("\n")
    sys.stdout.flush()
    if last is not None and last.finish_reason:
        sys.stderr.write(format_usage(last.finish_reason, last.usage) + "\n")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Example prefixd client: stream a completion, or print cache stats.")
    parser.add_argument("--target", default="127.0.0.1:50051", help="prefixd address")
    parser.add_argument("--token", default=os.environ.get("PREFIXD_TOKEN"),
                        help="bearer token (default: $PREFIXD_TOKEN)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per call")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="stream a completion of PROMPT")
    gen.add_argument("prompt", nargs="*", help="prompt words (joined with spaces)")
    gen.add_argument("--token-ids", help="prompt as token ids, e.g. 1,2,3")
    gen.add_argument("--max-tokens", type=int, default=64)
    gen.add_argument("--temperature", type=float, default=None)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--ignore-eos", action="store_true")
    sub.add_parser("stats", help="print cache statistics")
    args = parser.parse_args(argv)

    try:
        with PrefixdClient(args.target, token=args.token, timeout=args.timeout) as client:
            if args.command == "generate":
                return run_generate(client, args)
            print(format_stats(client.stats()))
            return 0
    except grpc.RpcError as error:
        sys.stderr.write(f"prefixd_client: {error.code().name}: {error.details()}\n")
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            return EXIT_UNAVAILABLE
        return EXIT_SERVER_ERROR


if __name__ == "__main__":
    sys.exit(main())
