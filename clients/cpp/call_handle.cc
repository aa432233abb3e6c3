#include "clients/cpp/call_handle.h"

#include <grpcpp/client_context.h>

namespace prefixd {

void CallHandle::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (context_ != nullptr) context_->TryCancel();
}

bool CallHandle::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

bool CallHandle::Attach(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  if (cancelled_) return false;
  context_ = context;
  return true;
}

void CallHandle::Detach() {
  absl::MutexLock lock(&mu_);
  context_ = nullptr;
}

}  // namespace prefixd
