// service/generation_service.h — prefixd.v1.Generation over the engine.
#ifndef PREFIXD_SERVICE_GENERATION_SERVICE_H_
#define PREFIXD_SERVICE_GENERATION_SERVICE_H_

#include "prefixd/v1/generation.grpc.pb.h"
#include "service/service_context.h"

namespace prefixd {

// Generate is served raw (its request parsed here), so that a message that does not parse
// (bad wire format, a string that is not UTF-8) gets INVALID_ARGUMENT saying so, and is
// counted, instead of gRPC's bare UNIMPLEMENTED.
class GenerationService final
    : public v1::Generation::WithRawCallbackMethod_Generate<v1::Generation::CallbackService> {
 public:
  // `context` must outlive the service.
  explicit GenerationService(ServiceContext* context) : context_(context) {}

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* ctx,
                                       const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;

 private:
  ServiceContext* context_;
};

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_GENERATION_SERVICE_H_
