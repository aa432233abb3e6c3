// TLS and mutual TLS on the gRPC port, with certificates made at test time
// (make_test_certs.sh, Debian's openssl).
#include <stdlib.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "clients/cpp/prefixd_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/service/server_process.h"

namespace prefixd {
namespace {

using ::prefixd::testing::ServerProcess;
using ::testing::HasSubstr;

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::system("openssl version > /dev/null 2>&1") != 0) return;
    char dir[] = "/tmp/prefixd-tls-XXXXXX";
    dir_ = new std::string(mkdtemp(dir));
    const std::string cmd = absl::StrCat(PREFIXD_MAKE_CERTS, " ", *dir_);
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static void TearDownTestSuite() {
    if (dir_ != nullptr) std::system(absl::StrCat("rm -rf ", *dir_).c_str());
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (dir_ == nullptr) GTEST_SKIP() << "no openssl to make certificates with";
  }

  static std::string File(const std::string& name) { return *dir_ + "/" + name; }

  static std::vector<std::string> TlsArgs() {
    return {"--tls_cert_file=" + File("server.pem"), "--tls_key_file=" + File("server.key")};
  }

  // A client of `server`; `cert` names a client certificate ("acme", ...) or none.
  static ClientOptions Client(const ServerProcess& server, const std::string& cert,
                              const std::string& token = "") {
    ClientOptions o;
    o.target = server.target();
    o.tls_ca_file = File("ca.pem");
    if (!cert.empty()) {
      o.tls_cert_file = File(cert + ".pem");
      o.tls_key_file = File(cert + ".key");
    }
    o.bearer_token = token;
    o.deadline = absl::Seconds(20);
    return o;
  }

  struct Result {
    absl::Status status;
    int cached_tokens = 0;
  };
  static Result Generate(const ClientOptions& options, int seed = 1) {
    PrefixdClient client(options);
    v1::GenerateRequest r;
    for (int i = 0; i < 40; ++i) r.mutable_token_ids()->add_ids((seed * 37 + i * 11) % 500);
    r.mutable_sampling()->set_max_tokens(2);
    Result result;
    result.status = client.Generate(r, [&](const v1::GenerateResponse& m) {
      if (m.has_usage()) result.cached_tokens = m.usage().cached_tokens();
    });
    return result;
  }

  static std::string* dir_;
};

std::string* TlsTest::dir_ = nullptr;

TEST_F(TlsTest, ATlsPortServesTlsClientsAndRefusesPlaintext) {
  auto server = ServerProcess::Start(TlsArgs());
  ASSERT_TRUE(server.ok()) << server.status();
  const Result tls = Generate(Client(**server, ""));
  EXPECT_TRUE(tls.status.ok()) << tls.status;
  ClientOptions plaintext;
  plaintext.target = (*server)->target();
  plaintext.deadline = absl::Seconds(5);
  EXPECT_EQ(Generate(plaintext).status.code(), absl::StatusCode::kUnavailable);
  // A client that does not trust the server's CA refuses the server.
  ClientOptions distrustful = Client(**server, "");
  distrustful.tls_ca_file = File("rogue_ca.pem");
  EXPECT_EQ(Generate(distrustful).status.code(), absl::StatusCode::kUnavailable);
}

TEST_F(TlsTest, MutualTlsTakesTheTenantFromTheClientCertificate) {
  const std::string tokens = File("tokens.json");
  std::ofstream(tokens) << R"({"tenants": [
      {"name": "acme", "client_common_names": ["acme-service"]},
      {"name": "bob", "tokens": ["bob-token-0123456789ab"]}]})";
  std::vector<std::string> args = TlsArgs();
  args.push_back("--tls_client_ca_file=" + File("ca.pem"));
  args.push_back("--tokens_file=" + tokens);
  auto server = ServerProcess::Start(args);
  ASSERT_TRUE(server.ok()) << server.status();

  // acme is known by its certificate alone; its namespace caches its prompts.
  EXPECT_TRUE(Generate(Client(**server, "acme"), 7).status.ok());
  EXPECT_EQ(Generate(Client(**server, "acme"), 7).cached_tokens, 32);
  // bob's certificate names no tenant, so bob needs its token; the same prompt is not
  // acme's to share.
  EXPECT_EQ(Generate(Client(**server, "bob"), 7).status.code(), absl::StatusCode::kUnauthenticated);
  const Result bob = Generate(Client(**server, "bob", "bob-token-0123456789ab"), 7);
  EXPECT_TRUE(bob.status.ok()) << bob.status;
  EXPECT_EQ(bob.cached_tokens, 0);
  // A certificate and a token of different tenants: refused.
  const Result both = Generate(Client(**server, "acme", "bob-token-0123456789ab"), 7);
  EXPECT_EQ(both.status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(both.status.message()), HasSubstr("different tenants"));
  // No certificate, or one the CA did not sign (even with acme's name): no connection.
  EXPECT_EQ(Generate(Client(**server, "")).status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Generate(Client(**server, "rogue")).status.code(), absl::StatusCode::kUnavailable);
  // The server is fine after all that.
  EXPECT_TRUE(Generate(Client(**server, "acme"), 8).status.ok());
}

TEST_F(TlsTest, BadTlsFilesStopTheServerAtStartWithAPreciseMessage) {
  auto missing = ServerProcess::Start(
      {"--tls_cert_file=" + File("server.pem"), "--tls_key_file=" + File("nope.key")});
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("nope.key"));
  auto mismatched = ServerProcess::Start(
      {"--tls_cert_file=" + File("server.pem"), "--tls_key_file=" + File("other.key")});
  ASSERT_FALSE(mismatched.ok());
  EXPECT_THAT(std::string(mismatched.status().message()),
              HasSubstr("is not the private key of the certificate"));
  auto half = ServerProcess::Start({"--tls_cert_file=" + File("server.pem")});
  ASSERT_FALSE(half.ok());
  EXPECT_THAT(std::string(half.status().message()), HasSubstr("--tls_key_file"));
}

}  // namespace
}  // namespace prefixd
