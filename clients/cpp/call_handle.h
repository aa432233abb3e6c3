// clients/cpp/call_handle.h — cancels a blocking streaming call from another thread.
#ifndef PREFIXD_CLIENTS_CPP_CALL_HANDLE_H_
#define PREFIXD_CLIENTS_CPP_CALL_HANDLE_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace grpc {
class ClientContext;
}  // namespace grpc

namespace prefixd {

// One handle serves one call at a time. PrefixdClient attaches the call's context while the
// call runs and detaches it before the context dies, so Cancel() never touches a dead
// context. A Cancel() that comes before the call starts makes the call return CANCELLED
// without contacting the server. A handle stays cancelled: use a fresh one per call.
class CallHandle {
 public:
  CallHandle() = default;
  CallHandle(const CallHandle&) = delete;
  CallHandle& operator=(const CallHandle&) = delete;

  // Thread-safe. The call returns CANCELLED soon after (grpc::ClientContext::TryCancel).
  void Cancel();
  bool cancelled() const;

  // For whoever runs the call (PrefixdClient): Attach() once the context exists, before the
  // call starts; it returns false if the handle was already cancelled (then do not start).
  // Detach() before the context is destroyed.
  bool Attach(grpc::ClientContext* context);
  void Detach();

 private:
  mutable absl::Mutex mu_;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace prefixd

#endif  // PREFIXD_CLIENTS_CPP_CALL_HANDLE_H_
