// service/kv_events.h — the cache's block events on a ZeroMQ PUB socket, in vLLM's KV-events
// wire format, for the cache-aware routers that already read vLLM's (llm-d's KV-cache
// indexer, NVIDIA Dynamo's KV router, SGLang's router).
//
// Every message has three frames, as vLLM's ZmqEventPublisher sends them:
//   topic      "kv@<replica>@<model>" (llm-d's convention; subscribers filter on it)
//   sequence   8 bytes, big-endian, from 0, one per message
//   payload    an EventBatch in msgpack: [ts (float64, seconds since the epoch), [events],
//              data_parallel_rank (0)]
// Events, in one of two layouts (KvEventsFormat): msgspec's array_like structs (vLLM up to
// its June 2026 change, 7 fields), or the tagged maps vLLM sends since:
//   BlockStored   block_hashes, parent_block_hash (nil for a sequence's first block),
//                 token_ids (every block's, in order), block_size, lora_id (nil), medium
//   BlockRemoved  block_hashes, medium
// medium is "GPU" for the device's KV pool and "CPU" for the host tier: a demotion is
// BlockRemoved "GPU" then BlockStored "CPU" with the same hashes, a promotion the reverse
// (a router that ignores the medium sees a block removed and stored again).
// A block hash is the low 64 bits of prefixd's chained XXH3-128 block key, always written
// as an 8-byte unsigned integer (msgpack uint64) so that every decoder takes it. Keys are
// stable for the life of the process (the hash seed is random per process); routers key
// their index by the token ids, and use these hashes to link parents and removals.
//
// The events carry every tenant's token ids: the socket is for the operator's own router,
// on loopback or a private network (the default binds loopback).
#ifndef PREFIXD_SERVICE_KV_EVENTS_H_
#define PREFIXD_SERVICE_KV_EVENTS_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "engine/engine.h"

namespace prefixd {

enum class KvEventsFormat {
  kArray,  // msgspec array_like structs: vLLM before June 2026, llm-d, Dynamo, SGLang
  kMap,    // tagged maps ({"type": "BlockStored", ...}): vLLM since June 2026
};

// "array" or "map"; anything else is an error that names both.
absl::StatusOr<KvEventsFormat> ParseKvEventsFormat(std::string_view name);

struct KvEventsOptions {
  // ZeroMQ endpoint the PUB socket binds, e.g. "tcp://127.0.0.1:5557" ("tcp://HOST:*": any
  // free port).
  std::string endpoint;
  std::string topic;  // "kv@<replica>@<model>"
  KvEventsFormat format = KvEventsFormat::kArray;
  // Events waiting to be sent; beyond it new events are dropped (and counted), so a stalled
  // publisher never holds the engine back.
  size_t max_queued_events = 100000;
};

// The msgpack EventBatch of `events` (exposed for tests).
std::string EncodeEventBatch(absl::Span<const CacheEvent> events, double timestamp, int block_size,
                             KvEventsFormat format);

class KvEventPublisher {
 public:
  // Binds the socket (an error names the endpoint and why), then publishes every event of
  // `engine`'s cache until destroyed. `engine` must outlive the publisher.
  static absl::StatusOr<std::unique_ptr<KvEventPublisher>> Start(Engine* engine,
                                                                 KvEventsOptions options);
  // Stops listening to the engine, sends what is queued, closes the socket.
  ~KvEventPublisher();

  // The bound endpoint, with the port chosen when it was "*".
  const std::string& endpoint() const { return endpoint_; }
  int64_t messages_sent() const { return messages_sent_.load(); }
  int64_t events_dropped() const { return events_dropped_.load(); }

 private:
  KvEventPublisher(Engine* engine, KvEventsOptions options, int block_size);
  void Run();  // the sending thread

  Engine* const engine_;
  const KvEventsOptions options_;
  const int block_size_;
  std::string endpoint_;
  struct Socket;
  std::unique_ptr<Socket> socket_;
  int64_t subscription_ = -1;

  absl::Mutex mu_;
  std::deque<CacheEvent> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int64_t> messages_sent_{0};
  std::atomic<int64_t> events_dropped_{0};
  std::thread thread_;
};

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_KV_EVENTS_H_
