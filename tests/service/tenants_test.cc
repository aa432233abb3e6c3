// Who a caller is without a tokens file: one namespace, admin only from this machine; the
// address rules that decide it; and the tokens file's weights and KV shares.
#include "service/tenants.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prefixd {
namespace {

using ::testing::HasSubstr;

TEST(TenantsTest, LoopbackPeersInEveryNotation) {
  for (const char* peer :
       {"ipv4:127.0.0.1:5000", "ipv4:127.1.2.3:1", "ipv6:[::1]:5000", "ipv6:[::ffff:127.0.0.1]:80",
        "unix:/tmp/prefixd.sock", "127.0.0.1:8000", "[::1]:8000"}) {
    EXPECT_TRUE(IsLoopbackPeer(peer)) << peer;
  }
  for (const char* peer :
       {"ipv4:10.0.0.5:5000", "ipv6:[2001:db8::1]:5000", "ipv6:[::ffff:10.0.0.1]:80",
        "192.168.1.2:8000", "[fe80::1]:1", "", "garbage", "ipv4:128.0.0.1:1"}) {
    EXPECT_FALSE(IsLoopbackPeer(peer)) << peer;
  }
}

TEST(TenantsTest, LoopbackListenAddresses) {
  for (const char* listen : {"127.0.0.1:50051", "localhost:8000", "[::1]:8000", "127.0.0.2:0"}) {
    EXPECT_TRUE(IsLoopbackListenAddress(listen)) << listen;
  }
  for (const char* listen : {"0.0.0.0:50051", "[::]:8000", "10.1.2.3:80", "example.com:80"}) {
    EXPECT_FALSE(IsLoopbackListenAddress(listen)) << listen;
  }
}

TEST(TenantsTest, OpenModeIsOneNamespaceAndAdminOnlyFromThisMachine) {
  const TenantDirectory open = TenantDirectory::Open();
  EXPECT_FALSE(open.requires_identity());
  absl::StatusOr<const Tenant*> local =
      open.Authenticate(std::nullopt, std::nullopt, "ipv4:127.0.0.1:4000");
  absl::StatusOr<const Tenant*> remote =
      open.Authenticate(std::nullopt, std::nullopt, "ipv4:10.0.0.7:4000");
  ASSERT_TRUE(local.ok() && remote.ok());
  EXPECT_TRUE((*local)->admin);
  EXPECT_FALSE((*remote)->admin);
  EXPECT_EQ((*local)->name, (*remote)->name);  // the same cache namespace
  // A token changes nothing in open mode.
  absl::StatusOr<const Tenant*> with_token =
      open.Authenticate("Bearer whatever-token-000000", std::nullopt, "10.0.0.7:1");
  ASSERT_TRUE(with_token.ok());
  EXPECT_FALSE((*with_token)->admin);
}

TEST(TenantsTest, WeightsAndKvSharesWithTheirDefaults) {
  absl::StatusOr<TenantDirectory> dir = TenantDirectory::FromJson(R"({"tenants": [
      {"name": "big", "tokens": ["big-token-0123456789"], "weight": 3, "kv_share": 0.5},
      {"name": "a", "tokens": ["a-token-0123456789"]},
      {"name": "b", "tokens": ["b-token-0123456789"]}]})",
                                                                  "tokens.json");
  ASSERT_TRUE(dir.ok()) << dir.status();
  const auto policies = dir->Policies();
  ASSERT_EQ(policies.size(), 3u);
  EXPECT_EQ(policies.at("big").weight, 3);
  EXPECT_DOUBLE_EQ(policies.at("big").kv_share, 0.5);
  // Those that give no share split what is left.
  EXPECT_EQ(policies.at("a").weight, 1);
  EXPECT_DOUBLE_EQ(policies.at("a").kv_share, 0.25);
  EXPECT_DOUBLE_EQ(policies.at("b").kv_share, 0.25);
  EXPECT_TRUE(TenantDirectory::Open().Policies().empty());
}

TEST(TenantsTest, BadWeightsAndSharesAreRefusedSayingWhy) {
  const struct {
    const char* fields;
    const char* error;
  } cases[] = {
      {R"("weight": 0)", "weight must be an integer in [1, 1000]"},
      {R"("weight": 2.5)", "weight must be an integer"},
      {R"("weight": "2")", "weight must be an integer"},
      {R"("kv_share": 1.5)", "kv_share must be a number in [0, 1]"},
      {R"("kv_share": -0.1)", "kv_share must be a number in [0, 1]"},
      {R"("kv_share": "half")", "kv_share must be a number"},
      {R"("kv_share": 0.75}, {"name": "y", "tokens": ["y-token-0123456789"], "kv_share": 0.5)",
       "kv_share add up to 1.25, more than the whole KV cache"},
  };
  for (const auto& c : cases) {
    const std::string json = absl::StrCat(
        R"({"tenants": [{"name": "x", "tokens": ["x-token-0123456789"], )", c.fields, "}]}");
    absl::StatusOr<TenantDirectory> dir = TenantDirectory::FromJson(json, "tokens.json");
    ASSERT_FALSE(dir.ok()) << json;
    EXPECT_THAT(std::string(dir.status().message()), HasSubstr(c.error)) << json;
    EXPECT_THAT(std::string(dir.status().message()), HasSubstr("tokens.json")) << json;
  }
}

}  // namespace
}  // namespace prefixd
