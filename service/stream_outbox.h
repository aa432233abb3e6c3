// service/stream_outbox.h — the write side of a server-streaming RPC fed from another thread.
//
// The engine's thread produces messages; gRPC allows one write in flight per stream. The
// outbox queues what is produced, writes it one message at a time, and finishes the RPC
// once everything queued is written. It is shared (std::shared_ptr) between the reactor and
// the producer, so a producer that outlives the RPC (the reactor is deleted in OnDone)
// finds a detached outbox and drops what it sends.
//
// Messages may go out as they are, or serialized by the outbox into grpc::ByteBuffer for a
// method served raw (Wire = grpc::ByteBuffer), so that the request side can parse its own
// message and refuse a malformed one with a status of its own.
//
// Locking: the decision to write or finish is claimed under the mutex and the gRPC call is
// made outside it, so a reaction that gRPC runs inline cannot deadlock, and the reactor
// cannot reach OnDone (and be deleted) while a claimed call is still to be made.
#ifndef PREFIXD_SERVICE_STREAM_OUTBOX_H_
#define PREFIXD_SERVICE_STREAM_OUTBOX_H_

#include <deque>
#include <memory>
#include <optional>
#include <type_traits>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"
#include "grpcpp/support/status.h"

namespace prefixd {

template <typename Response, typename Wire = Response>
class StreamOutbox {
 public:
  // At most `max_queued` messages wait; Push beyond that fails (the caller decides).
  StreamOutbox(grpc::ServerWriteReactor<Wire>* reactor, size_t max_queued)
      : reactor_(reactor), max_queued_(max_queued) {}

  // Edits the last queued message, or a new one if none waits: consecutive updates merge
  // into one message while the client is slow to read, so the queue stays short.
  void Merge(absl::FunctionRef<void(Response&)> fill) {
    {
      absl::MutexLock lock(&mu_);
      if (reactor_ == nullptr || final_) return;
      if (queue_.empty()) queue_.emplace_back();
      fill(queue_.back());
    }
    Pump();
  }

  // Queues a message. False (and nothing queued) if the queue is full or the stream ended.
  bool Push(Response message) {
    {
      absl::MutexLock lock(&mu_);
      if (reactor_ == nullptr || final_ || queue_.size() >= max_queued_) return false;
      queue_.push_back(std::move(message));
    }
    Pump();
    return true;
  }

  // Finishes with `status` once every queued message is written (an error status drops
  // nothing already queued). Later calls are ignored.
  void Finish(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      if (final_) return;
      final_ = std::move(status);
    }
    Pump();
  }

  // Finishes at once, dropping what is queued.
  void Abort(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      queue_.clear();
      if (!final_) final_ = std::move(status);
    }
    Pump();
  }

  // From the reactor's OnWriteDone.
  void OnWriteDone(bool ok) {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {  // the stream is broken (client gone): nothing more can be written
        queue_.clear();
        if (!final_) final_ = grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
      }
    }
    Pump();
  }

  // From the reactor's OnDone: the reactor is about to be deleted.
  void Detach() {
    absl::MutexLock lock(&mu_);
    reactor_ = nullptr;
    queue_.clear();
  }

  size_t queued() const {
    absl::MutexLock lock(&mu_);
    return queue_.size();
  }

 private:
  void Pump() {
    grpc::ServerWriteReactor<Wire>* reactor = nullptr;
    bool write = false;
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      if (reactor_ == nullptr || writing_ || finish_claimed_) return;
      if (!queue_.empty()) {
        current_ = ToWire(std::move(queue_.front()));
        queue_.pop_front();
        writing_ = true;
        write = true;
      } else if (final_) {
        finish_claimed_ = true;
        finish = final_;
      } else {
        return;
      }
      reactor = reactor_;
    }
    if (write) {
      reactor->StartWrite(&current_);  // current_ is untouched until OnWriteDone
    } else {
      reactor->Finish(*finish);
    }
  }

  static Wire ToWire(Response message) {
    if constexpr (std::is_same_v<Wire, Response>) {
      return message;
    } else {
      static_assert(std::is_same_v<Wire, grpc::ByteBuffer>);
      grpc::ByteBuffer buffer;
      bool own_buffer = false;
      (void)grpc::SerializationTraits<Response>::Serialize(message, &buffer, &own_buffer);
      return buffer;
    }
  }

  mutable absl::Mutex mu_;
  grpc::ServerWriteReactor<Wire>* reactor_ ABSL_GUARDED_BY(mu_);
  const size_t max_queued_;
  std::deque<Response> queue_ ABSL_GUARDED_BY(mu_);
  Wire current_;  // the message being written; owned by gRPC while writing_
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> final_ ABSL_GUARDED_BY(mu_);
  bool finish_claimed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_STREAM_OUTBOX_H_
