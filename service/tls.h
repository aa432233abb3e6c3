// service/tls.h — TLS and mutual TLS for the gRPC port.
//
// With a certificate and key, the port speaks TLS only. With a client CA as well, every
// client must present a certificate that CA signed (mutual TLS); its common name may then
// identify the tenant (tokens file: "client_common_names").
#ifndef PREFIXD_SERVICE_TLS_H_
#define PREFIXD_SERVICE_TLS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"

namespace prefixd {

struct TlsOptions {
  std::string cert_file;       // PEM certificate chain of the server
  std::string key_file;        // PEM private key of that certificate
  std::string client_ca_file;  // PEM CA bundle; set: clients must present a certificate it signed

  bool enabled() const {
    return !cert_file.empty() || !key_file.empty() || !client_ca_file.empty();
  }
};

// Insecure credentials when TLS is off; otherwise TLS credentials from the files, each
// checked first: readable, PEM that parses, the key matches the certificate. Errors name the
// file and the problem.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& options);

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_TLS_H_
