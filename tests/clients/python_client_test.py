#!/usr/bin/python3
"""Runs clients/python/prefixd_client.py against a live prefixd, as a user would.

usage: python_client_test.py SERVER_BINARY CLIENT_SCRIPT

Checks that `generate` streams text to stdout and reports usage on stderr, that the second
call with the same prompt reports cached_tokens > 0, that `tokenize` shows a conversation's
rendered chat template and ids, that `stats` prints the hit rate, and that its
x-prefix-key is the C++ client's (tests/clients/prefix_key_test.cc has the same figures).
"""

import re
import subprocess
import sys
import threading

PROMPT = ["You", "are", "a", "helpful", "assistant.", "Keep", "answers", "short,", "kind",
          "and", "accurate,", "and", "say", "so", "when", "you", "do", "not", "know."]


def start_server(server_binary):
    # Free ports for gRPC and the HTTP side port (tests run side by side); a small KV pool
    # keeps start-up fast.
    server = subprocess.Popen([server_binary, "--listen=127.0.0.1:0", "--http_listen=127.0.0.1:0",
                               "--openai_listen=127.0.0.1:0",
                               "--kv_cache_tokens=65536"], stdout=subprocess.PIPE, text=True)
    for line in server.stdout:
        sys.stdout.write(line)
        match = re.match(r"prefixd: listening on (\S+)", line)
        if match:
            # Keep draining stdout so the server never blocks on a full pipe.
            threading.Thread(target=lambda: [sys.stdout.write(l) for l in server.stdout],
                             daemon=True).start()
            return server, match.group(1)
    server.wait()
    raise SystemExit(f"FAIL: {server_binary} exited with {server.returncode} before listening")


def run_client(client_script, target, *args):
    result = subprocess.run(["/usr/bin/python3", client_script, "--target", target, *args],
                            capture_output=True, text=True, timeout=300)
    print(f"$ prefixd_client.py {' '.join(args)} -> exit {result.returncode}")
    print(result.stdout, end="")
    print(result.stderr, end="", file=sys.stderr)
    return result


def check(condition, message):
    if not condition:
        raise SystemExit(f"FAIL: {message}")


def check_prefix_keys(client_script):
    """The Python client's prefix_key() against the C++ client's figures."""
    import importlib.util
    import os
    spec = importlib.util.spec_from_file_location("prefixd_client", client_script)
    sys.path.insert(0, os.path.dirname(client_script))  # its generated stubs
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    gen = client.generation_pb2
    check(client.prefix_key(gen.GenerateRequest(text="hello")) == "658e980f05195ead",
          "text prefix key differs from the C++ client's")
    chat = gen.GenerateRequest(chat=client.conversation(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]))
    check(client.prefix_key(chat) == "84afb6d64c6b1260", "chat prefix key differs")
    ids = gen.GenerateRequest(shared_namespace="team", token_ids=gen.TokenIds(ids=[1, 2, 3]))
    check(client.prefix_key(ids) == "d126b25cbd6b2030", "token ids prefix key differs")


def main():
    server_binary, client_script = sys.argv[1], sys.argv[2]
    check_prefix_keys(client_script)
    server, target = start_server(server_binary)
    try:
        cached = []
        for _ in range(2):
            result = run_client(client_script, target, "generate", "--max-tokens", "6",
                                "--temperature", "0", *PROMPT)
            check(result.returncode == 0, f"generate exited {result.returncode}")
            check(result.stdout.strip() != "", "generate printed no text")
            match = re.search(r"cached_tokens (\d+)", result.stderr)
            check(match is not None, "generate printed no usage with cached_tokens")
            check("completion_tokens 6" in result.stderr, "usage lacks completion_tokens 6")
            cached.append(int(match.group(1)))
        check(cached[0] == 0, f"first call already had {cached[0]} cached tokens")
        check(cached[1] > 0, "second call with the same prompt had no cached tokens")

        # A conversation, rendered by the model's chat template on the server.
        tokenized = run_client(client_script, target, "tokenize", "--system", "Be brief.",
                               "Hello", "there")
        check(tokenized.returncode == 0, f"tokenize exited {tokenized.returncode}")
        check("<|start_header_id|>system<|end_header_id|>" in tokenized.stdout,
              "tokenize did not show the rendered chat template")
        check(re.search(r"--- \d+ token ids ---\n[0-9,]+\n", tokenized.stdout) is not None,
              "tokenize printed no token ids")
        chat_cached = []
        for _ in range(2):
            result = run_client(client_script, target, "generate", "--max-tokens", "4",
                                "--temperature", "0", "--system", " ".join(PROMPT), "Hello")
            check(result.returncode == 0, f"generate --system exited {result.returncode}")
            chat_cached.append(int(re.search(r"cached_tokens (\d+)", result.stderr).group(1)))
        check(chat_cached[1] > 0, "the same conversation again had no cached tokens")

        stats = run_client(client_script, target, "stats")
        check(stats.returncode == 0, f"stats exited {stats.returncode}")
        check("hit rate" in stats.stdout, "stats printed no hit rate")

        bad = run_client(client_script, target, "generate", "--token-ids", "1,2,99999999")
        check(bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr,
              "an invalid token id should exit 1 with INVALID_ARGUMENT")
    finally:
        server.terminate()
        server.wait(timeout=60)
    print("PASS")


if __name__ == "__main__":
    main()
