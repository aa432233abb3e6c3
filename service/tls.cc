#include "service/tls.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "openssl/bio.h"
#include "openssl/evp.h"
#include "openssl/pem.h"
#include "openssl/x509.h"

namespace prefixd {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the ", what, " file ", path));
  std::stringstream text;
  text << in.rdbuf();
  if (text.str().find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": the ", what, " is not PEM"));
  }
  return text.str();
}

// The first certificate of a PEM chain (nullptr if none parses); the caller frees it.
X509* ParseCertificate(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return cert;
}

absl::Status CheckKeyPair(const std::string& cert_pem, const std::string& key_pem,
                          const TlsOptions& o) {
  X509* cert = ParseCertificate(cert_pem);
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(o.cert_file, ": no certificate could be parsed"));
  }
  BIO* bio = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  absl::Status status = absl::OkStatus();
  if (key == nullptr) {
    status = absl::InvalidArgumentError(
        absl::StrCat(o.key_file, ": no private key could be parsed (is it encrypted?)"));
  } else if (X509_check_private_key(cert, key) != 1) {
    status = absl::InvalidArgumentError(
        absl::StrCat(o.key_file, " is not the private key of the certificate in ", o.cert_file));
  }
  EVP_PKEY_free(key);
  X509_free(cert);
  return status;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& o) {
  if (!o.enabled()) return grpc::InsecureServerCredentials();
  if (o.cert_file.empty() || o.key_file.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both a certificate and its key (--tls_cert_file and --tls_key_file)");
  }
  absl::StatusOr<std::string> cert = ReadPem(o.cert_file, "certificate");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem(o.key_file, "private key");
  if (!key.ok()) return key.status();
  if (absl::Status s = CheckKeyPair(*cert, *key, o); !s.ok()) return s;

  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  if (!o.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPem(o.client_ca_file, "client CA");
    if (!ca.ok()) return ca.status();
    X509* parsed = ParseCertificate(*ca);
    if (parsed == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(o.client_ca_file, ": no CA certificate could be parsed"));
    }
    X509_free(parsed);
    ssl.pem_root_certs = *ca;
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace prefixd
