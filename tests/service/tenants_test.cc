// Who a caller is without a tokens file: one namespace, admin only from this machine; and
// the address rules that decide it.
#include "service/tenants.h"

#include "gtest/gtest.h"

namespace prefixd {
namespace {

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

}  // namespace
}  // namespace prefixd
