#!/usr/bin/python3
"""The OpenAI-compatible port of a live prefixd, byte by byte, as curl and hostile clients
see it (standard library only).

usage: openai_http_test.py SERVER_BINARY WORK_DIR [--streams N]

Checks the Server-Sent Events framing of a streamed chat completion (role first, the
finish_reason on the last choice chunk, the usage chunk with empty choices, then
[DONE]), the error shapes and statuses (bad JSON, wrong types, wrong content type, huge
bodies, unknown paths and methods, missing and unknown keys, unknown models), that a
slowloris client holding headers and a client that never reads its stream stop nobody
else, that a client disconnecting mid-stream cancels its request (the request log says
so), the request log's lines, and N concurrent streaming chat completions (default 1000)
held to completion without an error, and the drain on SIGTERM.
"""

import http.client
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

TOKEN_A = "tenant-a-secret-token-0001"
TOKEN_B = "tenant-b-secret-token-0002"
SYSTEM = ("You are a helpful assistant for a small bakery. Answer in one short sentence and "
          "never make up prices.")


def check(condition, message):
    if not condition:
        raise SystemExit(f"FAIL: {message}")


class Server:
    """A prefixd with a tokens file, its OpenAI port on a free port, the request log in a
    file."""

    def __init__(self, binary, work_dir, *flags):
        os.makedirs(work_dir, exist_ok=True)
        tokens = os.path.join(work_dir, "tokens.json")
        with open(tokens, "w") as f:
            json.dump({"tenants": [{"name": "tenant-a", "tokens": [TOKEN_A]},
                                   {"name": "tenant-b", "tokens": [TOKEN_B]}]}, f)
        self.log_path = os.path.join(work_dir, "requests.log")
        if os.path.exists(self.log_path):
            os.remove(self.log_path)
        self.process = subprocess.Popen(
            [binary, "--listen=127.0.0.1:0", "--http_listen=", "--openai_listen=127.0.0.1:0",
             f"--tokens_file={tokens}", "--kv_cache_tokens=131072",
             f"--request_log={self.log_path}", "--shutdown_grace=5s", *flags],
            stdout=subprocess.PIPE, text=True)
        self.port = None
        for line in self.process.stdout:
            sys.stdout.write(line)
            match = re.match(r"prefixd: OpenAI-compatible API on http://127\.0\.0\.1:(\d+)/v1",
                             line)
            if match:
                self.port = int(match.group(1))
            if line.startswith("prefixd: listening on"):
                threading.Thread(target=lambda: [None for _ in self.process.stdout],
                                 daemon=True).start()
                break
        check(self.port is not None, "the server printed no OpenAI-compatible API line")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        check(code == 0, f"prefixd exited {code} after SIGTERM")

    def request(self, method, path, body=None, headers=None, token=TOKEN_A):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        h = {"Content-Type": "application/json"}
        if token:
            h["Authorization"] = f"Bearer {token}"
        h.update(headers or {})
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        conn.request(method, path, body=data, headers=h)
        response = conn.getresponse()
        payload = response.read()
        conn.close()
        return response.status, dict(response.getheaders()), payload

    def log_lines(self, request_id, deadline_s=30):
        """The request log's lines for `request_id`, waiting until one is written."""
        deadline = time.monotonic() + deadline_s
        pattern = re.compile(rf"\bid={re.escape(request_id)}\b")
        while True:
            with open(self.log_path) as f:
                lines = [l for l in f if pattern.search(l)]
            if lines or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)  # polling a file for a line, not timing anything


def chat_body(user, stream=False, max_tokens=8, **extra):
    body = {"model": "", "messages": [{"role": "system", "content": SYSTEM},
                                      {"role": "user", "content": user}],
            "max_tokens": max_tokens, "temperature": 0, "stream": stream}
    body.update(extra)
    return body


def expect_error(server, status, body, path="/v1/chat/completions", method="POST",
                 headers=None, token=TOKEN_A, param=None, what=""):
    got, _, payload = server.request(method, path, body, headers, token)
    check(got == status, f"{what}: status {got}, expected {status}: {payload[:300]!r}")
    error = json.loads(payload)["error"]
    check(isinstance(error["message"], str) and error["message"],
          f"{what}: error without message: {payload!r}")
    check({"message", "type", "param", "code"} <= error.keys(), f"{what}: error shape {error}")
    if param is not None:
        check(error["param"] == param, f"{what}: param {error['param']!r}, expected {param!r}")
    print(f"ok: {what} -> {status} {error['message'][:100]!r}")


# ---- raw HTTP/1.1 over a socket, to see the exact bytes ----

def raw_request(port, method, path, body, extra_headers=""):
    data = body.encode() if isinstance(body, str) else body
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {TOKEN_A}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n{extra_headers}\r\n").encode() + data


def read_until(sock, buffer, marker):
    while marker not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed before {marker!r}; got {bytes(buffer)[:300]!r}")
        buffer += chunk
    index = buffer.index(marker) + len(marker)
    head = bytes(buffer[:index])
    del buffer[:index]
    return head


def read_chunked(sock, buffer):
    """The decoded body of a chunked response, and the chunks as sent."""
    chunks = []
    while True:
        size = int(read_until(sock, buffer, b"\r\n")[:-2], 16)
        while len(buffer) < size + 2:
            more = sock.recv(65536)
            if not more:
                raise EOFError("connection closed inside a chunk")
            buffer += more
        chunks.append(bytes(buffer[:size]))
        check(buffer[size:size + 2] == b"\r\n", "a chunk is not followed by CRLF")
        del buffer[:size + 2]
        if size == 0:
            return b"".join(chunks), chunks


def sse_events(body):
    check(body.endswith(b"\n\n"), f"the stream does not end with a blank line: {body[-80:]!r}")
    events = body[:-2].split(b"\n\n")
    for e in events:
        check(e.startswith(b"data: ") and b"\n" not in e, f"not an SSE data line: {e[:200]!r}")
    return [e[len(b"data: "):].decode() for e in events]


def test_sse_framing(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=120)
    body = json.dumps(chat_body("What do you sell?", stream=True, max_tokens=6,
                                stream_options={"include_usage": True}))
    sock.sendall(raw_request(server.port, "POST", "/v1/chat/completions", body,
                             "X-Request-Id: sse-1\r\n"))
    buffer = bytearray()
    head = read_until(sock, buffer, b"\r\n\r\n").decode().lower()
    check(head.startswith("http/1.1 200"), f"stream status line: {head[:80]!r}")
    check("content-type: text/event-stream" in head, f"stream content type: {head!r}")
    check("transfer-encoding: chunked" in head, f"stream not chunked: {head!r}")
    check("x-request-id: sse-1" in head, "the X-Request-Id header is not echoed")
    body, _ = read_chunked(sock, buffer)
    events = sse_events(body)
    check(events[-1] == "[DONE]", f"the last event is {events[-1]!r}, not [DONE]")
    chunks = [json.loads(e) for e in events[:-1]]
    for c in chunks:
        check(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"],
              f"chunk object/id: {c}")
    check(chunks[0]["choices"][0]["delta"].get("role") == "assistant",
          f"the first chunk has no role: {chunks[0]}")
    usage_chunk = chunks[-1]
    check(usage_chunk["choices"] == [], f"the usage chunk has choices: {usage_chunk}")
    usage = usage_chunk["usage"]
    check(1 <= usage["completion_tokens"] <= 6, f"usage {usage}")
    check(usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"],
          f"total_tokens: {usage}")
    check(isinstance(usage["prompt_tokens_details"]["cached_tokens"], int), f"usage {usage}")
    choice_chunks = [c for c in chunks[:-1]]
    finishes = [c["choices"][0]["finish_reason"] for c in choice_chunks]
    check(finishes[-1] in ("stop", "length") and all(f is None for f in finishes[:-1]),
          f"finish_reason must be on the last choice chunk only: {finishes}")
    for c in choice_chunks:
        check("usage" not in c or c["usage"] is None, f"usage on a choice chunk: {c}")
    # The connection stays usable (keep-alive): a second request on it.
    sock.sendall(raw_request(server.port, "GET", "/v1/models", ""))
    head = read_until(sock, buffer, b"\r\n\r\n").decode().lower()
    check(head.startswith("http/1.1 200"), f"keep-alive request after a stream: {head[:80]!r}")
    sock.close()
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in choice_chunks)
    status, _, payload = server.request("POST", "/v1/chat/completions",
                                        chat_body("What do you sell?", max_tokens=6))
    check(status == 200, f"non-streamed chat: {status} {payload[:200]!r}")
    whole = json.loads(payload)
    check(whole["choices"][0]["message"]["content"] == text,
          "greedy streamed and non-streamed replies differ: "
          f"{text!r} vs {whole['choices'][0]['message']['content']!r}")
    check(whole["usage"]["prompt_tokens_details"]["cached_tokens"] > 0,
          f"the second call of one prompt had no cached tokens: {whole['usage']}")
    print(f"ok: SSE framing ({len(events)} events), keep-alive, cached_tokens "
          f"{whole['usage']['prompt_tokens_details']['cached_tokens']} on the second call")


def test_pipelining(server):
    """Requests sent back to back on one connection, before any answer, are answered in order
    and at once (the next one waits in the server's buffer, not for the idle timeout)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    body = json.dumps(chat_body("Hello there", stream=True, max_tokens=3))
    started = time.monotonic()
    sock.sendall(raw_request(server.port, "POST", "/v1/chat/completions", body) +
                 raw_request(server.port, "GET", "/v1/models", "") +
                 raw_request(server.port, "POST", "/v1/completions",
                             json.dumps({"model": "", "prompt": "Hi", "max_tokens": 2})))
    buffer = bytearray()
    head = read_until(sock, buffer, b"\r\n\r\n").decode().lower()
    check(head.startswith("http/1.1 200"), f"pipelined stream: {head[:80]!r}")
    body, _ = read_chunked(sock, buffer)
    check(sse_events(body)[-1] == "[DONE]", "the pipelined stream did not end with [DONE]")
    for what in ("models", "completion"):
        head = read_until(sock, buffer, b"\r\n\r\n").decode().lower()
        check(head.startswith("http/1.1 200"), f"pipelined {what}: {head[:80]!r}")
        length = int(head.split("content-length:")[1].split("\r\n")[0])
        while len(buffer) < length:
            more = sock.recv(65536)
            check(bool(more), f"connection closed inside the pipelined {what} body")
            buffer += more
        check(json.loads(bytes(buffer[:length])).get("object") is not None,
              f"pipelined {what} body: {bytes(buffer[:200])!r}")
        del buffer[:length]
    elapsed = time.monotonic() - started
    check(elapsed < 15, f"three pipelined answers took {elapsed:.1f} s (an idle timeout?)")
    sock.close()
    print(f"ok: three pipelined requests answered in order in {elapsed:.2f} s")


def test_curl(server):
    """The README's curl line, as a newcomer runs it: -N streams the events as they come."""
    curl = shutil.which("curl")
    if curl is None:
        print("skipped: curl is not installed")
        return
    body = json.dumps(chat_body("Hello", stream=True, max_tokens=4,
                                stream_options={"include_usage": True}))
    out = subprocess.run([curl, "-sS", "-N", f"http://127.0.0.1:{server.port}/v1/chat/completions",
                          "-H", "Content-Type: application/json",
                          "-H", f"Authorization: Bearer {TOKEN_A}", "-d", body],
                         capture_output=True, timeout=120)
    check(out.returncode == 0, f"curl exited {out.returncode}: {out.stderr!r}")
    events = sse_events(out.stdout)
    check(events[-1] == "[DONE]", f"curl's stream ends with {events[-1]!r}")
    check(json.loads(events[-2])["usage"]["prompt_tokens_details"]["cached_tokens"] >= 0,
          "curl's stream has no usage chunk")
    bad = subprocess.run([curl, "-sS", f"http://127.0.0.1:{server.port}/v1/chat/completions",
                          "-H", f"Authorization: Bearer {TOKEN_A}", "-H",
                          "Content-Type: application/json", "-d", "{oops",
                          "-w", "\\n%{http_code}"], capture_output=True, timeout=60)
    check(bad.stdout.decode().endswith("\n400"), f"curl with bad JSON: {bad.stdout!r}")
    print(f"ok: curl -N streams {len(events)} events ending in [DONE]; bad JSON -> 400")


def test_http10_stream(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=120)
    body = json.dumps(chat_body("Hi", stream=True, max_tokens=3))
    sock.sendall(raw_request(server.port, "POST", "/v1/chat/completions", body)
                 .replace(b"HTTP/1.1", b"HTTP/1.0", 1))
    data = bytearray()
    while True:
        more = sock.recv(65536)
        if not more:
            break
        data += more
    sock.close()
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"),
          f"HTTP/1.0 stream: {head[:80]!r}")
    check(b"chunked" not in head.lower(), "chunked encoding sent to an HTTP/1.0 client")
    check(sse_events(body)[-1] == "[DONE]", "HTTP/1.0 stream does not end with [DONE]")
    print("ok: HTTP/1.0 client gets a close-delimited stream")


def test_errors(server):
    expect_error(server, 400, "{not json", what="bad JSON")
    expect_error(server, 400, "[1, 2]", what="JSON that is not an object")
    expect_error(server, 400, '{"messages": [], "seed": 1e999999}', what="a number past double")
    expect_error(server, 400, chat_body("x", max_tokens="ten"), param="max_tokens",
                 what="wrong type")
    expect_error(server, 400, {"model": "", "messages": "hello"}, param="messages",
                 what="messages not a list")
    expect_error(server, 400, chat_body("x", temperature=-1), param="temperature",
                 what="temperature out of range")
    expect_error(server, 400, chat_body("x", n=3), param="n", what="n > 1")
    expect_error(server, 400, {"model": ""}, path="/v1/completions", param="prompt",
                 what="completions without prompt")
    expect_error(server, 400, json.dumps(chat_body("x")), headers={"Content-Type": "text/plain"},
                 what="wrong content type")
    expect_error(server, 404, chat_body("x", model="gpt-17"), param="model", what="unknown model")
    expect_error(server, 404, None, path="/v1/models/gpt-17", method="GET",
                 what="unknown model id")
    expect_error(server, 404, {}, path="/v1/embeddings", what="unknown path")
    expect_error(server, 405, None, path="/v1/chat/completions", method="GET",
                 what="wrong method")
    expect_error(server, 401, chat_body("x"), token=None, what="missing key")
    expect_error(server, 401, chat_body("x"), token="not-a-valid-token-at-all", what="unknown key")
    expect_error(server, 403, chat_body("x"), headers={"X-Shared-Namespace": "public"},
                 what="shared namespace not granted")
    # A body over the limit is refused from its Content-Length, before it is sent.
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                 f"{TOKEN_A}\r\nContent-Type: application/json\r\nContent-Length: "
                 f"{100 << 20}\r\n\r\n".encode())
    buffer = bytearray()
    head = read_until(sock, buffer, b"\r\n\r\n").decode()
    check(head.startswith("HTTP/1.1 413"), f"100 MiB body: {head[:80]!r}")
    sock.close()
    print("ok: 100 MiB body -> 413 before the body is sent")
    # Chunked bodies are counted as they arrive.
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    sock.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                 f"{TOKEN_A}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked"
                 "\r\n\r\n".encode())
    piece = b"x" * (1 << 20)
    try:
        for _ in range(8):
            sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    buffer = bytearray()
    head = read_until(sock, buffer, b"\r\n\r\n").decode()
    check(head.startswith("HTTP/1.1 413"), f"8 MiB chunked body: {head[:80]!r}")
    sock.close()
    print("ok: 8 MiB chunked body -> 413")
    # Headers over the limit.
    status, _, _ = server.request("GET", "/v1/models", headers={"X-Big": "y" * (64 << 10)})
    check(status == 431, f"64 KiB header: {status}")
    print("ok: 64 KiB header -> 431")
    # The server is fine after all of it.
    status, _, _ = server.request("POST", "/v1/chat/completions", chat_body("Hi", max_tokens=2))
    check(status == 200, f"a normal request after the bad ones: {status}")


def test_slow_clients(server):
    # Slowloris: connections that send a few header bytes and then trickle.
    slow = []
    for i in range(64):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        slow.append(s)
    # A client that starts a long stream and never reads it.
    stuck = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(raw_request(server.port, "POST", "/v1/chat/completions",
                              json.dumps(chat_body("Tell me everything.", stream=True,
                                                   max_tokens=400, ignore_eos=True)),
                              "X-Request-Id: never-reads\r\n"))
    for s in slow:
        s.sendall(b"a")
    # Everyone else is served meanwhile.
    for i in range(4):
        status, _, payload = server.request("POST", "/v1/chat/completions",
                                            chat_body(f"Question {i}", max_tokens=4))
        check(status == 200, f"request beside slow clients: {status} {payload[:200]!r}")
    status, _, _ = server.request("GET", "/health", token=None)
    check(status == 200, f"/health beside slow clients: {status}")
    for s in slow:
        s.close()
    stuck.close()
    # The stuck stream ends once its client is gone: one line in the request log.
    lines = server.log_lines("never-reads")
    check(len(lines) == 1, f"the never-reading client's request has {len(lines)} log lines")
    print(f"ok: 64 slowloris connections and a never-reading stream hurt no one; "
          f"{lines[0].split(' status=')[1].split()[0]} once it left")


def test_disconnect_cancels(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    sock.sendall(raw_request(server.port, "POST", "/v1/chat/completions",
                             json.dumps(chat_body("Write a long story.", stream=True,
                                                  max_tokens=2000, ignore_eos=True)),
                             "X-Request-Id: leaves-early\r\n"))
    buffer = bytearray()
    read_until(sock, buffer, b"\r\n\r\n")
    read_until(sock, buffer, b"data: ")  # the stream has started
    sock.close()
    lines = server.log_lines("leaves-early")
    check(len(lines) == 1, f"disconnected request has {len(lines)} log lines: {lines}")
    check("status=CANCELLED" in lines[0], f"disconnect did not cancel: {lines[0]}")
    completion = int(re.search(r"completion_tokens=(\d+)", lines[0]).group(1))
    check(completion < 2000, f"the cancelled request generated all {completion} tokens")
    print(f"ok: a client leaving mid-stream cancels its request ({completion} of 2000 tokens)")


def test_request_log(server):
    status, headers, _ = server.request("POST", "/v1/completions",
                                        {"model": "", "prompt": "The secret word is swordfish",
                                         "max_tokens": 3},
                                        headers={"X-Request-Id": "logged-1"})
    check(status == 200, f"completion: {status}")
    lines = server.log_lines("logged-1")
    check(len(lines) == 1, f"{len(lines)} log lines for one request")
    line = lines[0]
    for field in ("tenant=tenant-a", "protocol=openai", "status=OK", "prompt_tokens=",
                  "cached_tokens=", "completion_tokens=3", "queue_ms=", "ttft_ms=", "total_ms="):
        check(field in line, f"the request log line lacks {field}: {line}")
    check("swordfish" not in line, "the prompt was logged without --log_prompts")
    expect_error(server, 401, chat_body("x"), token=None, what="refused request for the log",
                 headers={"X-Request-Id": "refused-1"})
    print("ok: request log line: " + line.strip()[:160])


def test_concurrent_streams(server, n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 256), hard))
    body = json.dumps(chat_body("Say hello.", stream=True, max_tokens=8, ignore_eos=True))
    selector = selectors.DefaultSelector()
    states = {}
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        s.setblocking(False)
        states[s] = {"out": raw_request(server.port, "POST", "/v1/chat/completions", body),
                     "in": bytearray()}
        selector.register(s, selectors.EVENT_WRITE | selectors.EVENT_READ)
    done = 0
    deadline = time.monotonic() + 600
    while done < n:
        check(time.monotonic() < deadline, f"only {done} of {n} streams ended in 600 s")
        for key, events in selector.select(timeout=5):
            s, st = key.fileobj, states[key.fileobj]
            if events & selectors.EVENT_WRITE and st["out"]:
                sent = s.send(st["out"])
                st["out"] = st["out"][sent:]
                if not st["out"]:
                    selector.modify(s, selectors.EVENT_READ)
            if events & selectors.EVENT_READ:
                more = s.recv(65536)
                st["in"] += more
                _, sep, chunked = bytes(st["in"]).partition(b"\r\n\r\n")
                ended = sep and (chunked == b"0\r\n\r\n" or chunked.endswith(b"\r\n0\r\n\r\n"))
                if not more or ended:
                    selector.unregister(s)
                    s.close()
                    done += 1
    failures = 0
    for st in states.values():
        data = bytes(st["in"])
        if not data.startswith(b"HTTP/1.1 200") or b"data: [DONE]" not in data:
            failures += 1
            if failures <= 3:
                print(f"failed stream: {data[:300]!r}")
    check(failures == 0, f"{failures} of {n} concurrent streams failed")
    print(f"ok: {n} concurrent streaming chat completions all ended with [DONE]")


def test_drain(server):
    """SIGTERM: a running stream finishes, a kept-alive connection gets 503, new connections
    are refused, and the server exits 0."""
    stream = socket.create_connection(("127.0.0.1", server.port), timeout=120)
    stream.sendall(raw_request(server.port, "POST", "/v1/chat/completions",
                               json.dumps(chat_body("Go on.", stream=True, max_tokens=300,
                                                    ignore_eos=True))))
    buffer = bytearray()
    head = read_until(stream, buffer, b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 200"), f"stream before the drain: {head[:80]!r}")
    kept = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    kept.request("GET", "/health")
    check(kept.getresponse().read() is not None, "health before the drain")
    server.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while True:  # until the drain has begun: /health turns 503 on the kept connection
        kept.request("GET", "/health")
        response = kept.getresponse()
        response.read()
        if response.status == 503 or time.monotonic() > deadline:
            break
    check(response.status == 503, f"/health while draining: {response.status}")
    kept.request("POST", "/v1/completions", body=json.dumps({"prompt": "x", "max_tokens": 2}),
                 headers={"Authorization": f"Bearer {TOKEN_A}",
                          "Content-Type": "application/json"})
    response = kept.getresponse()
    payload = response.read()
    check(response.status == 503, f"a new request while draining: {response.status} {payload!r}")
    check(json.loads(payload)["error"]["message"], "503 without an OpenAI error body")
    kept.close()
    try:
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
        refused = False
    except OSError:
        refused = True
    check(refused, "a new connection was accepted while draining")
    body, _ = read_chunked(stream, buffer)
    events = sse_events(body)
    check(events[-1] == "[DONE]", "the running stream did not finish while draining")
    finish = json.loads(events[-2])["choices"][0]["finish_reason"]
    check(finish == "length", f"the running stream ended with {finish}")
    stream.close()
    code = server.process.wait(timeout=60)
    check(code == 0, f"prefixd exited {code} after draining")
    print("ok: drain: the running stream finished, new requests 503, new connections refused, "
          "exit 0")


def main():
    binary, work_dir = sys.argv[1], sys.argv[2]
    streams = 1000
    if len(sys.argv) > 4 and sys.argv[3] == "--streams":
        streams = int(sys.argv[4])
    server = Server(binary, work_dir, "--max_queued_requests=2048", "--max_running_requests=256")
    try:
        test_sse_framing(server)
        test_pipelining(server)
        test_curl(server)
        test_http10_stream(server)
        test_errors(server)
        test_request_log(server)
        test_disconnect_cancels(server)
        test_slow_clients(server)
        test_concurrent_streams(server, streams)
        test_drain(server)
    finally:
        if server.process.poll() is None:
            server.stop()
    print("PASS")


if __name__ == "__main__":
    main()
