#!/usr/bin/python3
"""prefixd's KV events as a cache-aware router reads them: a ZeroMQ SUB socket and Debian's
msgpack, written independently of the server's code, checked field by field against vLLM's
wire format (service/kv_events.h).

usage: kv_events_test.py SERVER_BINARY WORK_DIR PYTHON_CLIENT_DIR

Checks the three frames (topic kv@<replica>@<model>, an 8-byte big-endian sequence that
counts messages, the msgpack EventBatch [ts, events, 0]), BlockStored (hashes as 8-byte
unsigned integers, parent nil for a sequence's first block and the previous block's hash
after it, the blocks' token ids, block size 16, lora_id nil, medium "GPU") in both layouts
("array" and "map"), BlockRemoved for evicted blocks, that the index a router builds from
the events equals what the server reports cached, and the start-up errors for a bad format
and an endpoint in use. With a host tier (--host_kv_cache_bytes): an evicted block is
BlockRemoved "GPU" then BlockStored "CPU", a hit brings it back ("CPU" removed, "GPU"
stored), and a router's index per medium equals what the server reports in each tier.
"""

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time

import msgpack  # python3-msgpack
import zmq  # python3-zmq

BLOCK = 16


def check(condition, message):
    if not condition:
        raise SystemExit(f"FAIL: {message}")


class Server:
    def __init__(self, binary, *flags, replica="replica-a"):
        self.process = subprocess.Popen(
            [binary, "--listen=127.0.0.1:0", "--http_listen=127.0.0.1:0",
             "--openai_listen=127.0.0.1:0", "--kv_events_endpoint=tcp://127.0.0.1:*",
             f"--kv_events_replica_id={replica}", "--kv_cache_tokens=1024",
             "--max_running_requests=8", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.endpoint = self.topic = self.openai = self.http = self.grpc = None
        for line in self.process.stdout:
            sys.stdout.write(line)
            if m := re.match(r"prefixd: KV events on (\S+), topic (\S+)", line):
                self.endpoint, self.topic = m.group(1), m.group(2)
            if m := re.match(r"prefixd: OpenAI-compatible API on http://([\d.]+:\d+)/v1", line):
                self.openai = m.group(1)
            if m := re.match(r"prefixd: dashboard on http://([\d.]+:\d+)/", line):
                self.http = m.group(1)
            if line.startswith("prefixd: listening on"):
                self.grpc = line.split()[-1]
                break
        if not (self.endpoint and self.topic):
            self.process.kill()
            raise SystemExit("FAIL: the server printed no KV events line:\n" +
                             self.process.stderr.read()[-2000:])
        threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True).start()
        threading.Thread(target=lambda: [None for _ in self.process.stderr], daemon=True).start()

    def complete(self, ids, max_tokens=1):
        host, port = self.openai.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.request("POST", "/v1/completions",
                     json.dumps({"model": self.model(), "prompt": ids, "max_tokens": max_tokens,
                                 "temperature": 0}),
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        body = response.read()
        check(response.status == 200, f"completion: {response.status} {body[:300]!r}")

    def flush(self):
        """Drops every cached block (an admin call: open mode allows it from loopback)."""
        import grpc
        from prefixd.v1 import cache_pb2, cache_pb2_grpc
        with grpc.insecure_channel(self.grpc) as channel:
            return cache_pb2_grpc.CacheStub(channel).Flush(cache_pb2.FlushRequest(),
                                                           timeout=30).freed_blocks

    def model(self):
        return self.topic.split("@", 2)[2]

    def metrics(self):
        host, port = self.http.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()

    def cached_blocks(self, family="prefixd_kv_cached_blocks"):
        """Blocks on the device (summed over tenants), or in the host tier with
        family="prefixd_kv_host_cached_blocks"."""
        return sum(int(float(v)) for v in
                   re.findall(rf"^{family}\{{[^}}]*\}} (\S+)$", self.metrics(), re.M))

    def counter(self, name):
        m = re.search(rf"^{name} (\S+)$", self.metrics(), re.M)
        check(m, f"no {name} in /metrics")
        return int(float(m.group(1)))

    def stop(self):
        self.process.terminate()
        check(self.process.wait(timeout=60) == 0, "prefixd did not exit cleanly")


class Subscriber:
    """A router's side: SUB on the topic prefix, decoding every message as it comes."""

    def __init__(self, endpoint):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"kv@")  # llm-d's filter
        self.socket.connect(endpoint)
        self.last_seq = None
        self.messages = 0

    def receive(self, timeout_s=30):
        """One message's events, or None after timeout_s."""
        if not self.socket.poll(timeout_s * 1000):
            return None
        frames = self.socket.recv_multipart()
        check(len(frames) == 3, f"{len(frames)} frames, want 3")
        topic, seq, payload = frames
        self.topic = topic.decode()
        check(len(seq) == 8, f"sequence frame of {len(seq)} bytes")
        seq = int.from_bytes(seq, "big")
        if self.last_seq is not None:
            check(seq == self.last_seq + 1, f"sequence {seq} after {self.last_seq}")
        self.last_seq = seq
        self.messages += 1
        batch = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        check(isinstance(batch, list) and len(batch) == 3, f"EventBatch {batch!r:.200}")
        ts, events, rank = batch
        check(isinstance(ts, float) and abs(ts - time.time()) < 60, f"timestamp {ts}")
        check(rank == 0, f"data_parallel_rank {rank}")
        self.payload = payload
        return events

    def close(self):
        self.socket.close(0)
        self.context.term()


def as_dict(event):
    """An event in either layout as {type, fields...} (vLLM's field order)."""
    if isinstance(event, dict):
        return event
    kind = event[0]
    if kind == "BlockStored":
        check(len(event) == 7, f"BlockStored array of {len(event)} elements, want 7")
        names = ["block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id",
                 "medium"]
    elif kind == "BlockRemoved":
        check(len(event) == 3, f"BlockRemoved array of {len(event)} elements, want 3")
        names = ["block_hashes", "medium"]
    else:
        raise SystemExit(f"FAIL: unknown event {kind!r}")
    return {"type": kind, **dict(zip(names, event[1:]))}


def connect(server):
    """Subscribes, then sends distinct prompts until events flow (a SUB socket misses what
    was published before its subscription reached the publisher), then flushes the cache:
    from an empty cache on, the subscriber has seen every event."""
    sub = Subscriber(server.endpoint)
    for i in range(200):
        server.complete([300 + i % 100] * (BLOCK + 1))
        if sub.receive(timeout_s=1) is not None:
            server.flush()
            while sub.receive(timeout_s=1) is not None:  # the flush's BlockRemoved
                pass
            check(server.cached_blocks() == 0, "blocks cached after a flush")
            return sub
    raise SystemExit("FAIL: no KV events arrived for 200 requests")


def test_events(binary, layout):
    server = Server(binary, f"--kv_events_format={layout}")
    check(server.topic == f"kv@replica-a@{server.model()}", f"topic {server.topic}")
    sub = connect(server)
    check(sub.topic == server.topic, f"frame topic {sub.topic}")

    # A 70-token prompt: 4 full blocks stored, parent nil, their token ids.
    prompt = list(range(10, 80))
    server.complete(prompt)
    stored = []
    while (events := sub.receive(timeout_s=5)) is not None:
        stored += [as_dict(e) for e in events]
        if sum(len(e.get("block_hashes", [])) for e in stored if e["type"] == "BlockStored") >= 4:
            break
    stored = [e for e in stored if e["type"] == "BlockStored"]
    check(stored, "no BlockStored for a 70-token prompt")
    first = stored[0]
    if layout == "map":
        check(list(first)[0] == "type", "map events start with \"type\"")
        check(set(first) == {"type", "block_hashes", "parent_block_hash", "token_ids",
                             "block_size", "lora_id", "medium", "lora_name"},
              f"BlockStored keys {sorted(first)}")
        check(first["lora_name"] is None, "lora_name")
    check(first["parent_block_hash"] is None, "the first block's parent is nil")
    check(first["block_size"] == BLOCK and first["lora_id"] is None and first["medium"] == "GPU",
          f"BlockStored fields {first}")
    hashes = [h for e in stored for h in e["block_hashes"]]
    tokens = [t for e in stored for t in e["token_ids"]]
    check(len(hashes) == 4 and tokens == prompt[:64], f"{len(hashes)} blocks, tokens {tokens}")
    for h in hashes:
        check(isinstance(h, int) and 0 <= h < 2**64, f"hash {h!r}")
    # Hashes always travel as msgpack uint64 (0xcf + 8 bytes), whatever their value.
    check(b"\xcf" + hashes[-1].to_bytes(8, "big") in sub.payload, "hash not written as uint64")
    for e in stored[1:]:
        check(e["parent_block_hash"] is not None, "a later run of blocks has a parent")

    # The same prompt extended by 32 tokens: two more blocks, chained to the fourth.
    longer = prompt + list(range(200, 232))
    server.complete(longer)
    more = []
    while not more and (events := sub.receive(timeout_s=5)) is not None:
        more = [as_dict(e) for e in events if as_dict(e)["type"] == "BlockStored"]
    check(more, "no BlockStored for the extension")
    check(more[0]["parent_block_hash"] == hashes[-1],
          f"parent {more[0]['parent_block_hash']} is not the fourth block {hashes[-1]}")
    check([t for e in more for t in e["token_ids"]] == longer[64:96], "the extension's tokens")

    # A router's index: stored minus removed. 64 blocks of cache and 40 distinct 4-block
    # prompts: blocks get evicted, and the index follows.
    index = set(hashes) | {h for e in more for h in e["block_hashes"]}
    removed_total = 0
    for i in range(40):
        server.complete([(i * 7 + j) % 400 + 50 for j in range(65)])
    deadline = time.time() + 60
    while time.time() < deadline:
        events = sub.receive(timeout_s=2)
        if events is None:
            break
        for e in map(as_dict, events):
            if e["type"] == "BlockStored":
                if e["parent_block_hash"] is not None:
                    check(e["parent_block_hash"] in index, "a block stored under an unknown parent")
                for h in e["block_hashes"]:
                    check(h not in index, f"block {h} stored twice")
                    index.add(h)
            else:
                check(e["medium"] == "GPU", "BlockRemoved medium")
                for h in e["block_hashes"]:
                    check(h in index, f"removed block {h} was never stored (or removed twice)")
                    index.discard(h)
                    removed_total += 1
    check(removed_total > 0, "40 prompts on a 64-block cache evicted nothing")
    check(len(index) == server.cached_blocks(),
          f"the router's index holds {len(index)} blocks, the server {server.cached_blocks()}")
    print(f"{layout}: {sub.messages} messages, index {len(index)} blocks, "
          f"{removed_total} removed: OK")
    sub.close()
    server.stop()


def test_host_tier(binary):
    # The test model's block is 64 KiB on the CPU: a 1024-token device pool (64 blocks) and a
    # 256-block host tier, which 40 more 4-block prompts do not fill.
    server = Server(binary, "--kv_events_format=map", "--host_kv_cache_bytes=16M")
    sub = connect(server)
    demoted_before = server.counter("prefixd_kv_demoted_blocks_total")
    promoted_before = server.counter("prefixd_kv_promoted_blocks_total")
    index = {"GPU": set(), "CPU": set()}
    removed_from = {}  # hash -> the medium it was last removed from
    moves = []  # (hash, from medium, to medium), in order

    def apply(events):
        for e in map(as_dict, events):
            medium = e["medium"]
            check(medium in index, f"medium {medium!r}")
            for h in e["block_hashes"]:
                if e["type"] == "BlockStored":
                    check(h not in index[medium], f"block {h} stored twice on the {medium}")
                    other = "CPU" if medium == "GPU" else "GPU"
                    if h in removed_from and removed_from.pop(h) == other:
                        moves.append((h, other, medium))
                    index[medium].add(h)
                else:
                    check(h in index[medium], f"removed block {h} is not on the {medium}")
                    index[medium].discard(h)
                    removed_from[h] = medium

    def drain():
        while (events := sub.receive(timeout_s=2)) is not None:
            apply(events)

    prompt = list(range(10, 80))  # 4 full blocks
    server.complete(prompt)
    drain()
    first = set(index["GPU"])
    check(len(first) == 4, f"{len(first)} blocks on the GPU for a 4-block prompt")
    for i in range(40):
        server.complete([(i * 7 + j) % 400 + 50 for j in range(65)])
    drain()
    demoted = [h for h, a, b in moves if (a, b) == ("GPU", "CPU")]
    check(first <= set(demoted), "the first prompt's blocks were not demoted to the CPU")
    check(first <= index["CPU"] and not first & index["GPU"], "the first prompt is not on the CPU")
    server.complete(prompt)  # a hit in the host tier: its blocks come back
    drain()
    promoted = [h for h, a, b in moves if (a, b) == ("CPU", "GPU")]
    check(first <= set(promoted), "the first prompt's blocks were not promoted back to the GPU")
    check(first <= index["GPU"] and not first & index["CPU"], "the first prompt is not on the GPU")
    check(len(index["GPU"]) == server.cached_blocks(),
          f"GPU index {len(index['GPU'])} blocks, the server {server.cached_blocks()}")
    host = server.cached_blocks("prefixd_kv_host_cached_blocks")
    check(len(index["CPU"]) == host, f"CPU index {len(index['CPU'])} blocks, the server {host}")
    # Each move the router saw is one the server counted (bringing the prompt back demoted
    # as many blocks to make room).
    demoted = [h for h, a, b in moves if (a, b) == ("GPU", "CPU")]
    promoted_n = server.counter("prefixd_kv_promoted_blocks_total") - promoted_before
    demoted_n = server.counter("prefixd_kv_demoted_blocks_total") - demoted_before
    check(promoted_n == len(promoted), f"{promoted_n} promoted in /metrics, {len(promoted)} seen")
    check(demoted_n == len(demoted), f"{demoted_n} demoted in /metrics, {len(demoted)} seen")
    print(f"host tier: {len(demoted)} blocks demoted, {len(promoted)} promoted, index "
          f"{len(index['GPU'])} GPU + {len(index['CPU'])} CPU blocks: OK")
    sub.close()
    server.stop()


def test_startup_errors(binary):
    bad = subprocess.run([binary, "--listen=127.0.0.1:0", "--http_listen=", "--openai_listen=",
                          "--kv_events_endpoint=tcp://127.0.0.1:*", "--kv_events_format=xml"],
                         capture_output=True, text=True, timeout=120)
    check(bad.returncode == 2 and "--kv_events_format" in bad.stderr and "map" in bad.stderr,
          f"bad format: {bad.returncode} {bad.stderr[-300:]}")
    at = subprocess.run([binary, "--listen=127.0.0.1:0", "--http_listen=", "--openai_listen=",
                         "--kv_events_endpoint=tcp://127.0.0.1:*", "--kv_events_replica_id=a@b"],
                        capture_output=True, text=True, timeout=120)
    check(at.returncode == 2 and "'@'" in at.stderr, f"replica id with @: {at.stderr[-300:]}")
    first = Server(binary)
    taken = subprocess.run([binary, "--listen=127.0.0.1:0", "--http_listen=", "--openai_listen=",
                            f"--kv_events_endpoint={first.endpoint}"],
                           capture_output=True, text=True, timeout=120)
    check(taken.returncode == 2 and "cannot bind the KV events socket" in taken.stderr,
          f"endpoint in use: {taken.returncode} {taken.stderr[-300:]}")
    first.stop()
    print("start-up errors: OK")


def main():
    binary, work_dir = sys.argv[1], sys.argv[2]
    sys.path.insert(0, sys.argv[3])  # the generated gRPC stubs (flush)
    os.makedirs(work_dir, exist_ok=True)
    test_events(binary, "array")
    test_events(binary, "map")
    test_host_tier(binary)
    test_startup_errors(binary)
    print("PASS")


if __name__ == "__main__":
    main()
