// TLS and mutual TLS on the gRPC port, with certificates made at test time
// (make_test_certs.sh, Debian's openssl).
#include <signal.h>
#include <stdlib.h>

#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "clients/cpp/prefixd_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tests/service/server_process.h"

namespace prefixd {
namespace {

using ::prefixd::testing::ServerProcess;
using ::testing::HasSubstr;

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // A server that refuses a handshake closes the socket under the client's feet; the HTTP
    // client's next write must fail, not kill the test.
    signal(SIGPIPE, SIG_IGN);
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

  // Mutual TLS with two tenants: acme known by its certificate's common name, bob by token.
  static std::vector<std::string> MutualTlsArgs() {
    const std::string tokens = File("tokens.json");
    std::ofstream(tokens) << R"({"tenants": [
        {"name": "acme", "client_common_names": ["acme-service"]},
        {"name": "bob", "tokens": ["bob-token-0123456789ab"]}]})";
    std::vector<std::string> args = TlsArgs();
    args.push_back("--tls_client_ca_file=" + File("ca.pem"));
    args.push_back("--tokens_file=" + tokens);
    return args;
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
  auto server = ServerProcess::Start(MutualTlsArgs());
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

// ---- the OpenAI-compatible port: the same certificate flags, the same tenants ----

// The OpenAI port's "https://HOST:PORT/v1" as a host and port.
std::pair<std::string, int> HostPort(const std::string& url) {
  std::string rest = url.substr(url.find("://") + 3);
  rest = rest.substr(0, rest.find('/'));
  int port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(rest.substr(rest.rfind(':') + 1), &port)) << url;
  return {rest.substr(0, rest.rfind(':')), port};
}

struct HttpResult {
  int status = -1;  // -1: no response (the connection failed)
  nlohmann::json body;
};

// POST /v1/completions over TLS, trusting `ca`, with client certificate `cert` (or none).
HttpResult Complete(const std::string& url, const std::string& ca, const std::string& cert_pem,
                    const std::string& cert_key, const std::string& token = "") {
  const auto [host, port] = HostPort(url);
  httplib::SSLClient client(host, port, cert_pem, cert_key);
  client.set_ca_cert_path(ca.c_str());
  client.enable_server_certificate_verification(true);
  client.set_connection_timeout(10);
  client.set_read_timeout(20);
  httplib::Headers headers;
  if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
  const std::string body = R"({"prompt": [11, 22, 33, 44, 55, 66, 77, 88, 99, 111, 122, 133,
      144, 155, 166, 177, 188, 199, 211, 222, 233, 244, 255, 266, 277, 288, 299, 311, 322, 333,
      344, 355, 366, 377, 388, 399], "max_tokens": 2})";
  HttpResult result;
  if (auto r = client.Post("/v1/completions", headers, body, "application/json")) {
    result.status = r->status;
    result.body = nlohmann::json::parse(r->body, nullptr, false);
  }
  return result;
}

int CachedTokens(const HttpResult& r) {
  return r.body["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>();
}

TEST_F(TlsTest, TheOpenAiPortIsTlsWhenGrpcIsAndRefusesPlaintext) {
  auto server = ServerProcess::Start(TlsArgs());
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string url = (*server)->openai_url();
  ASSERT_EQ(url.rfind("https://", 0), 0u) << url;
  const HttpResult tls = Complete(url, File("ca.pem"), "", "");
  EXPECT_EQ(tls.status, 200) << tls.body.dump();
  // Plaintext HTTP gets no answer; a client that distrusts the server's CA refuses it.
  const auto [host, port] = HostPort(url);
  httplib::Client plaintext(host, port);
  plaintext.set_read_timeout(5);
  auto r = plaintext.Get("/v1/models");
  EXPECT_TRUE(!r || r->status >= 400);
  EXPECT_EQ(Complete(url, File("rogue_ca.pem"), "", "").status, -1);
  EXPECT_EQ(Complete(url, File("ca.pem"), "", "").status, 200);  // still serving
}

TEST_F(TlsTest, MutualTlsOnTheOpenAiPortTakesTheTenantFromTheCertificate) {
  auto server = ServerProcess::Start(MutualTlsArgs());
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string url = (*server)->openai_url();
  const std::string ca = File("ca.pem");
  // acme by its certificate alone; its second call hits its own cache.
  const HttpResult first = Complete(url, ca, File("acme.pem"), File("acme.key"));
  ASSERT_EQ(first.status, 200) << first.body.dump();
  const HttpResult second = Complete(url, ca, File("acme.pem"), File("acme.key"));
  ASSERT_EQ(second.status, 200) << second.body.dump();
  EXPECT_EQ(CachedTokens(second), 32);
  // bob's certificate names no tenant: 401 without the token; with it, bob's own namespace.
  EXPECT_EQ(Complete(url, ca, File("bob.pem"), File("bob.key")).status, 401);
  const HttpResult bob =
      Complete(url, ca, File("bob.pem"), File("bob.key"), "bob-token-0123456789ab");
  ASSERT_EQ(bob.status, 200) << bob.body.dump();
  EXPECT_EQ(CachedTokens(bob), 0);
  // acme's certificate with bob's token: refused; no certificate or a rogue one: no
  // connection at all.
  EXPECT_EQ(Complete(url, ca, File("acme.pem"), File("acme.key"), "bob-token-0123456789ab").status,
            403);
  EXPECT_EQ(Complete(url, ca, "", "").status, -1);
  EXPECT_EQ(Complete(url, ca, File("rogue.pem"), File("rogue.key")).status, -1);
}

}  // namespace
}  // namespace prefixd
