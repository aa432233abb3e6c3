#include "service/kv_events.h"

#include <algorithm>
#include <cstdio>
#include <msgpack.hpp>
#include <utility>
#include <vector>
#include <zmq.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace prefixd {
namespace {

// Events per message at most: a flush of a large cache goes out as several messages.
constexpr size_t kMaxEventsPerBatch = 1024;

using Packer = msgpack::packer<msgpack::sbuffer>;

void PackString(Packer& p, std::string_view s) {
  p.pack_str(static_cast<uint32_t>(s.size()));
  p.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

// Always the 9-byte form (0xcf + 8 bytes): decoders that want a 64-bit integer take it
// whatever its value (llm-d's rejects hashes that arrive as narrower integers).
void PackHash(Packer& p, const BlockKey& key) { p.pack_fix_uint64(key.lo); }

// vLLM's names for where the blocks are: "GPU" for the device's KV pool (also on the CPU
// backend, whose pool plays the GPU's part), "CPU" for the host tier (as vLLM's CPU
// offloading reports it).
std::string_view MediumName(CacheEvent::Medium medium) {
  return medium == CacheEvent::Medium::kHost ? "CPU" : "GPU";
}

void PackHashes(Packer& p, const CacheEvent& event) {
  p.pack_array(static_cast<uint32_t>(event.keys.size()));
  for (const BlockKey& key : event.keys) PackHash(p, key);
}

void PackStored(Packer& p, const CacheEvent& event, int block_size, KvEventsFormat format) {
  const bool map = format == KvEventsFormat::kMap;
  if (map) {
    p.pack_map(8);
    PackString(p, "type");
  } else {
    p.pack_array(7);
  }
  PackString(p, "BlockStored");
  if (map) PackString(p, "block_hashes");
  PackHashes(p, event);
  if (map) PackString(p, "parent_block_hash");
  if (event.parent_is_root) {
    p.pack_nil();
  } else {
    PackHash(p, event.parent);
  }
  if (map) PackString(p, "token_ids");
  p.pack_array(static_cast<uint32_t>(event.tokens.size()));
  for (TokenId t : event.tokens) p.pack_int32(t);
  if (map) PackString(p, "block_size");
  p.pack_int32(block_size);
  if (map) PackString(p, "lora_id");
  p.pack_nil();
  if (map) PackString(p, "medium");
  PackString(p, MediumName(event.medium));
  if (map) {
    // Required in vLLM's map layout (no default), so written even when nil.
    PackString(p, "lora_name");
    p.pack_nil();
  }
}

void PackRemoved(Packer& p, const CacheEvent& event, KvEventsFormat format) {
  const bool map = format == KvEventsFormat::kMap;
  if (map) {
    p.pack_map(3);
    PackString(p, "type");
  } else {
    p.pack_array(3);
  }
  PackString(p, "BlockRemoved");
  if (map) PackString(p, "block_hashes");
  PackHashes(p, event);
  if (map) PackString(p, "medium");
  PackString(p, MediumName(event.medium));
}

}  // namespace

absl::StatusOr<KvEventsFormat> ParseKvEventsFormat(std::string_view name) {
  if (name == "array") return KvEventsFormat::kArray;
  if (name == "map") return KvEventsFormat::kMap;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown KV events format \"", std::string(name),
      "\": \"array\" (vLLM's array_like events, before June 2026) or \"map\" (since)"));
}

std::string EncodeEventBatch(absl::Span<const CacheEvent> events, double timestamp, int block_size,
                             KvEventsFormat format) {
  msgpack::sbuffer buffer;
  Packer p(buffer);
  p.pack_array(3);
  p.pack_double(timestamp);
  p.pack_array(static_cast<uint32_t>(events.size()));
  for (const CacheEvent& event : events) {
    if (event.kind == CacheEvent::Kind::kStored) {
      PackStored(p, event, block_size, format);
    } else {
      PackRemoved(p, event, format);
    }
  }
  p.pack_int32(0);  // data_parallel_rank: one rank per replica
  return std::string(buffer.data(), buffer.size());
}

struct KvEventPublisher::Socket {
  zmq::context_t context{1};
  zmq::socket_t socket{context, zmq::socket_type::pub};
};

KvEventPublisher::KvEventPublisher(Engine* engine, KvEventsOptions options, int block_size)
    : engine_(engine), options_(std::move(options)), block_size_(block_size) {}

absl::StatusOr<std::unique_ptr<KvEventPublisher>> KvEventPublisher::Start(Engine* engine,
                                                                          KvEventsOptions options) {
  if (options.topic.empty() || options.topic.find('@') == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("KV events topic \"", options.topic,
                                                   "\" should look like kv@<replica>@<model>"));
  }
  std::unique_ptr<KvEventPublisher> p(
      new KvEventPublisher(engine, std::move(options), engine->block_size()));
  p->socket_ = std::make_unique<Socket>();
  try {
    p->socket_->socket.set(zmq::sockopt::sndhwm, 100000);
    // On close, what is still queued gets a second to leave.
    p->socket_->socket.set(zmq::sockopt::linger, 1000);
    p->socket_->socket.bind(p->options_.endpoint);
    p->endpoint_ = p->socket_->socket.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot bind the KV events socket to ", p->options_.endpoint, ": ", e.what()));
  }
  KvEventPublisher* raw = p.get();
  p->subscription_ = engine->Subscribe(
      [raw](const CacheEvent& event) {
        absl::MutexLock lock(&raw->mu_);
        if (raw->queue_.size() >= raw->options_.max_queued_events) {
          ++raw->events_dropped_;
          return;
        }
        raw->queue_.push_back(event);
      },
      nullptr);
  p->thread_ = std::thread([raw] { raw->Run(); });
  return p;
}

KvEventPublisher::~KvEventPublisher() {
  if (subscription_ >= 0) engine_->Unsubscribe(subscription_);
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void KvEventPublisher::Run() {
  uint64_t sequence = 0;
  int64_t dropped_reported = 0;
  while (true) {
    std::vector<CacheEvent> batch;
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](KvEventPublisher* p)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) { return p->stopping_ || !p->queue_.empty(); },
          this));
      stopping = stopping_;
      const size_t n = std::min(queue_.size(), kMaxEventsPerBatch);
      batch.assign(std::make_move_iterator(queue_.begin()),
                   std::make_move_iterator(queue_.begin() + static_cast<ptrdiff_t>(n)));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
    }
    if (!batch.empty()) {
      const std::string payload =
          EncodeEventBatch(batch, absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()),
                           block_size_, options_.format);
      unsigned char seq[8];
      for (int i = 0; i < 8; ++i) seq[i] = static_cast<unsigned char>(sequence >> (56 - 8 * i));
      try {
        socket_->socket.send(zmq::buffer(options_.topic), zmq::send_flags::sndmore);
        socket_->socket.send(zmq::buffer(seq, sizeof(seq)), zmq::send_flags::sndmore);
        socket_->socket.send(zmq::buffer(payload), zmq::send_flags::none);
        ++sequence;
        ++messages_sent_;
      } catch (const zmq::error_t& e) {
        std::fprintf(stderr, "prefixd: KV events: send failed: %s\n", e.what());
      }
    }
    if (const int64_t dropped = events_dropped_.load(); dropped > dropped_reported) {
      std::fprintf(stderr, "prefixd: KV events: %lld dropped so far (the publisher fell behind)\n",
                   static_cast<long long>(dropped));
      dropped_reported = dropped;
    }
    if (stopping && batch.empty()) return;
  }
}

}  // namespace prefixd
