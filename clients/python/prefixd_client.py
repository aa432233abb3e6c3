#!/usr/bin/python3
"""A small Python client for prefixd, and an example of calling its gRPC API.

Run it with Debian's interpreter (it has python3-grpcio) from the build folder, where CMake
generates the stubs next to a copy of this file:

    /usr/bin/python3 build/clients/python/prefixd_client.py generate Once upon a time
    /usr/bin/python3 build/clients/python/prefixd_client.py --max-tokens 16 generate Hello
    /usr/bin/python3 build/clients/python/prefixd_client.py stats
    /usr/bin/python3 build/clients/python/prefixd_client.py generate --system "Be brief." Hi
    /usr/bin/python3 build/clients/python/prefixd_client.py tokenize --messages-file chat.json

`generate` prints the text to stdout as it streams in, then the usage (prompt tokens, how
many were served from the prefix cache, completion tokens, timings) to stderr. As a library:

    with PrefixdClient("127.0.0.1:50051") as client:
        for response in client.generate("Hello", max_tokens=16, temperature=0):
            print(response.text, end="", flush=True)
        print(response.usage.cached_tokens)   # the last message carries the usage
        chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
        for response in client.generate(messages=chat, max_tokens=16):
            ...                                # rendered by the model's chat template
        print(client.tokenize(messages=chat).prompt_text)

Exit codes: 0 success, 1 server error, 2 usage error, 3 server unavailable.
"""

import argparse
import json
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

    def generate(self, prompt=None, token_ids=None, messages=None, max_tokens=0,
                 temperature=None, top_k=0, top_p=None, seed=None, stop=(), ignore_eos=False,
                 request_id=""):
        """Streams GenerateResponse messages; the last one has finish_reason and usage.

        Give the prompt as text (`prompt`), as token ids (`token_ids`) or as a conversation
        (`messages`: [{"role": ..., "content": ...}, ...], rendered by the model's chat
        template on the server). Iterating may raise grpc.RpcError (e.g. INVALID_ARGUMENT,
        UNAVAILABLE); `.cancel()` on the returned iterator cancels the request.
        """
        request = generation_pb2.GenerateRequest(request_id=request_id)
        if messages is not None:
            request.chat.CopyFrom(conversation(messages))
        elif token_ids is not None:
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
        return self._generation.Generate(
            request, timeout=self._timeout,
            metadata=self._metadata + ((PREFIX_KEY_HEADER, prefix_key(request)),))

    def tokenize(self, prompt=None, messages=None):
        """The TokenizeResponse for text or a conversation: prompt_text (the rendered
        prompt) and token_ids, exactly as generate() would run them."""
        request = generation_pb2.TokenizeRequest()
        if messages is not None:
            request.chat.CopyFrom(conversation(messages))
        else:
            request.text = prompt
        return self._generation.Tokenize(request, timeout=self._timeout, metadata=self._metadata)

    def detokenize(self, token_ids, skip_special_tokens=False):
        """The text of `token_ids`."""
        request = generation_pb2.DetokenizeRequest(token_ids=token_ids,
                                                   skip_special_tokens=skip_special_tokens)
        return self._generation.Detokenize(request, timeout=self._timeout,
                                           metadata=self._metadata).text

    def stats(self):
        """The CacheStats message: hit rate, blocks by state, per-namespace counters."""
        return self._cache.GetStats(cache_pb2.GetStatsRequest(), timeout=self._timeout,
                                    metadata=self._metadata)


PREFIX_KEY_HEADER = "x-prefix-key"


def prefix_key(request):
    """The `x-prefix-key` of a GenerateRequest (or PinRequest): the same rule as the C++
    client (clients/cpp/prefix_key.h, docs/scale-out.md), so that a proxy in front of several
    replicas sends requests that share a prefix to the same one."""
    import xxhash  # python3-xxhash

    material = request.shared_namespace.encode() + b"\n"
    kind = request.WhichOneof("prompt")
    if kind == "chat":
        material += b"chat\n"
        messages = list(request.chat.messages)
        leading = 0
        while leading < len(messages) and messages[leading].role in ("system", "developer"):
            leading += 1
        for message in messages[:leading] if leading else messages[:1]:
            text = (message.text if message.WhichOneof("content") != "parts" else
                    "".join(part.text for part in message.parts.parts))
            material += f"{message.role}\n{text}\n".encode()
        material += request.chat.tools_json.encode()
    elif kind == "text":
        material += b"text\n" + request.text.encode()[:1024]
    elif kind == "token_ids":
        material += b"ids\n" + "".join(f"{i}," for i in request.token_ids.ids[:256]).encode()
    else:
        return ""
    return xxhash.xxh64(material, seed=0).hexdigest()


def conversation(messages):
    """A prefixd.v1.Conversation from messages in OpenAI's shape: [{"role", "content"}, ...];
    content may be a string, None, or a list of {"type": "text", "text": ...} parts."""
    result = generation_pb2.Conversation()
    for m in messages:
        message = result.messages.add(role=m["role"])
        content = m.get("content")
        if isinstance(content, str):
            message.text = content
        elif isinstance(content, list):
            for part in content:
                message.parts.parts.add(type=part.get("type", "text"), text=part.get("text", ""))
        if m.get("tool_calls") is not None:
            message.tool_calls_json = json.dumps(m["tool_calls"])
        message.tool_call_id = m.get("tool_call_id", "")
        message.name = m.get("name", "")
        extra = {k: v for k, v in m.items()
                 if k not in ("role", "content", "tool_calls", "tool_call_id", "name")}
        if extra:
            message.extra_json = json.dumps(extra)
    return result


def messages_from_args(args):
    """The conversation --system / --messages-file / --chat ask for, or None for text."""
    if not (args.system or args.messages_file or args.chat):
        return None
    messages = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    if args.messages_file:
        with (sys.stdin if args.messages_file == "-" else open(args.messages_file)) as f:
            messages.extend(json.load(f))
    if args.prompt:
        messages.append({"role": "user", "content": " ".join(args.prompt)})
    return messages


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
    ]
    if stats.HasField("blocks"):
        lines += [
            f"blocks   {b.total} total: {b.free} free, {b.evictable} evictable, "
            f"{b.in_use} in use ({b.pinned} pinned)",
        ]
        if stats.HasField("host_blocks"):  # the second tier, in host memory
            h = stats.host_blocks
            lines.append(
                f"host     {h.total} blocks: {h.free} free, {h.evictable} evictable, "
                f"{h.in_use} being promoted; {stats.demoted_blocks} demoted, "
                f"{stats.promoted_blocks} promoted, {stats.dropped_blocks} dropped")
        lines.append(
            f"requests {stats.running_requests} running, {stats.waiting_requests} waiting")
    else:  # a tenant's own view: the pool and the queue are the operator's
        lines.append("blocks   (pool and queue: admins only)")
    for ns in stats.namespaces:
        line = (f"namespace {ns.name or '(default)'}: {ns.hit_tokens}/{ns.query_tokens} "
                f"tokens hit ({100.0 * ns.hit_rate:.1f}%), {ns.cached_blocks} blocks")
        if ns.host_hit_tokens or ns.host_cached_blocks:
            line += f" (host: {ns.host_hit_tokens} tokens hit, {ns.host_cached_blocks} blocks)"
        lines.append(line)
    return "\n".join(lines)


def run_generate(client, args):
    messages = messages_from_args(args)
    if messages is not None:
        if not messages:
            sys.stderr.write("prefixd_client: the conversation is empty\n")
            return EXIT_USAGE
        stream = client.generate(messages=messages, max_tokens=args.max_tokens,
                                 temperature=args.temperature, seed=args.seed,
                                 ignore_eos=args.ignore_eos)
    elif args.token_ids:
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


def run_tokenize(client, args):
    messages = messages_from_args(args)
    if messages is None and not args.prompt:
        sys.stderr.write("prefixd_client: no prompt\n")
        return EXIT_USAGE
    if messages is not None:
        response = client.tokenize(messages=messages)
    else:
        response = client.tokenize(prompt=" ".join(args.prompt))
    print(f"--- prompt text ({len(response.prompt_text.encode())} bytes) ---")
    print(response.prompt_text)
    print(f"--- {len(response.token_ids)} token ids ---")
    print(",".join(str(i) for i in response.token_ids))
    return 0


def add_prompt_arguments(parser):
    parser.add_argument("prompt", nargs="*",
                        help="prompt words (joined with spaces); with a conversation, the "
                             "user's message")
    parser.add_argument("--system", help="a conversation starting with this system message")
    parser.add_argument("--messages-file",
                        help="a conversation: a JSON list of {role, content} (- reads stdin)")
    parser.add_argument("--chat", action="store_true",
                        help="the prompt words are a user message, rendered by the chat template")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Example prefixd client: stream a completion, tokenize a prompt, or print "
                    "cache stats.")
    parser.add_argument("--target", default="127.0.0.1:50051", help="prefixd address")
    parser.add_argument("--token", default=os.environ.get("PREFIXD_TOKEN"),
                        help="bearer token (default: $PREFIXD_TOKEN)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per call")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="stream a completion of PROMPT")
    add_prompt_arguments(gen)
    gen.add_argument("--token-ids", help="prompt as token ids, e.g. 1,2,3")
    gen.add_argument("--max-tokens", type=int, default=64)
    gen.add_argument("--temperature", type=float, default=None)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--ignore-eos", action="store_true")
    tok = sub.add_parser("tokenize", help="print the rendered prompt and its token ids")
    add_prompt_arguments(tok)
    sub.add_parser("stats", help="print cache statistics")
    args = parser.parse_args(argv)

    try:
        with PrefixdClient(args.target, token=args.token, timeout=args.timeout) as client:
            if args.command == "generate":
                return run_generate(client, args)
            if args.command == "tokenize":
                return run_tokenize(client, args)
            print(format_stats(client.stats()))
            return 0
    except grpc.RpcError as error:
        sys.stderr.write(f"prefixd_client: {error.code().name}: {error.details()}\n")
        # A stream cut before the server's status (a proxy ending a dead replica's streams)
        # is a transport failure, as in the C++ client.
        cut = error.code() == grpc.StatusCode.UNKNOWN and error.details() == "Stream removed"
        if error.code() == grpc.StatusCode.UNAVAILABLE or cut:
            return EXIT_UNAVAILABLE
        return EXIT_SERVER_ERROR


if __name__ == "__main__":
    sys.exit(main())
