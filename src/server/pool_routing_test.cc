#include "server/pool_routing.h"

#include <gtest/gtest.h>

#include "common/file_util.h"
#include "sip/parser.h"

namespace tandem {
namespace {

// The two-site example: pool1 (SIP ports 5061-5063) paired with pool2 (5071-5073).
CmsReplica::Snapshot TwoSites(int64_t version, int64_t routing_epoch, std::map<std::string, PoolRouting> routing) {
  auto text = ReadFile(std::string(TANDEM_SOURCE_DIR) + "/examples/two-sites.toml");
  TANDEM_CHECK(text.has_value());
  CmsDocument document{version, 1000 * version, "two-sites.toml", *text};
  document.routing = std::move(routing);
  document.routing_epoch = routing_epoch;
  auto snapshot = CmsReplica::MakeSnapshot(std::move(document));
  TANDEM_CHECK(snapshot.has_value());
  return *snapshot;
}

std::map<std::string, PoolRouting> Pool1ServedByPool2() {
  return {{"pool1.example.com", PoolRouting{.served_by = "pool2.example.com"}}};
}

TEST(PoolRoutingViewTest, EachPoolServesItsOwnUsersWithoutRoutingState) {
  PoolRoutingView view("pool2.example.com");
  EXPECT_TRUE(view.ServesHomePool("pool1.example.com")) << "no state yet: serve what arrives";
  EXPECT_TRUE(view.Update(TwoSites(1, 1, {})));
  EXPECT_TRUE(view.HasOtherPools());
  EXPECT_TRUE(view.ServesHomePool("pool2.example.com"));
  // pool2's store holds pool1's users (Backup Service): it must not serve them.
  const PoolSpec* serving = view.ServingPoolOf("pool1.example.com");
  ASSERT_NE(serving, nullptr);
  EXPECT_EQ(serving->fqdn, "pool1.example.com");
}

TEST(PoolRoutingViewTest, FailoverMovesAPoolsUsersToItsPartner) {
  PoolRoutingView pool1("pool1.example.com");
  PoolRoutingView pool2("pool2.example.com");
  pool1.Update(TwoSites(1, 1, {}));
  pool2.Update(TwoSites(1, 1, {}));
  EXPECT_TRUE(pool1.Update(TwoSites(2, 2, Pool1ServedByPool2())));
  EXPECT_TRUE(pool2.Update(TwoSites(2, 2, Pool1ServedByPool2())));
  EXPECT_TRUE(pool2.ServesHomePool("pool1.example.com"));
  EXPECT_TRUE(pool2.ServesHomePool("pool2.example.com"));
  ASSERT_NE(pool1.ServingPoolOf("pool1.example.com"), nullptr);
  EXPECT_EQ(pool1.ServingPoolOf("pool1.example.com")->fqdn, "pool2.example.com");
  EXPECT_EQ(pool1.routing_epoch(), 2);
}

TEST(PoolRoutingViewTest, AnOlderRoutingEpochIsIgnored) {
  PoolRoutingView pool1("pool1.example.com");
  pool1.Update(TwoSites(5, 3, Pool1ServedByPool2()));
  // A document from a stale master (newer version, older routing epoch) cannot
  // route pool1's users back to pool1.
  EXPECT_FALSE(pool1.Update(TwoSites(6, 2, {})));
  EXPECT_FALSE(pool1.ServesHomePool("pool1.example.com"));
  EXPECT_EQ(pool1.routing_epoch(), 3);
  // A failback (newer epoch) does.
  EXPECT_TRUE(pool1.Update(TwoSites(7, 4, {})));
  EXPECT_TRUE(pool1.ServesHomePool("pool1.example.com"));
}

TEST(PoolRoutingViewTest, UnchangedRoutingIsNotAChange) {
  PoolRoutingView pool1("pool1.example.com");
  pool1.Update(TwoSites(1, 2, Pool1ServedByPool2()));
  EXPECT_FALSE(pool1.Update(TwoSites(2, 2, Pool1ServedByPool2()))) << "a topology publish only";
}

TEST(PoolRoutingViewTest, AServingPoolMissingFromTheTopologyIsNotServedHere) {
  PoolRoutingView pool1("pool1.example.com");
  pool1.Update(TwoSites(1, 2, {{"pool1.example.com", PoolRouting{.served_by = "pool9.example.com"}}}));
  EXPECT_EQ(pool1.ServingPoolOf("pool1.example.com"), &PoolRoutingView::kMissingPool);
}

TEST(PoolRoutingTest, RedirectContactsNameEveryServerWithTheRequestTransport) {
  auto snapshot = TwoSites(1, 1, {});
  const PoolSpec* pool2 = snapshot.topology->FindPool("pool2.example.com");
  ASSERT_NE(pool2, nullptr);
  EXPECT_EQ(RedirectContactsOf(*pool2, "alice", sip::TransportProtocol::kUdp),
            (std::vector<std::string>{"<sip:alice@127.0.0.1:5071;transport=udp>",
                                      "<sip:alice@127.0.0.1:5072;transport=udp>",
                                      "<sip:alice@127.0.0.1:5073;transport=udp>"}));
  EXPECT_EQ(RedirectContactsOf(*pool2, "bob", sip::TransportProtocol::kTcp).front(),
            "<sip:bob@127.0.0.1:5071;transport=tcp>");
  PoolSpec ipv6{.fqdn = "pool3.example.com"};
  ipv6.servers.push_back(ServerSpec{.id = "fe1", .address = "::1", .sip_port = 5090});
  EXPECT_EQ(RedirectContactsOf(ipv6, "carol", sip::TransportProtocol::kUdp).front(),
            "<sip:carol@[::1]:5090;transport=udp>");
}

sip::SipMessage MessageVia(const std::string& vias) {
  std::string text = "MESSAGE sip:bob@example.com SIP/2.0\r\n" + vias +
                     "Max-Forwards: 69\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n"
                     "Call-ID: c1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";
  auto parsed = sip::ParseMessage(text);
  TANDEM_CHECK(parsed.has_value());
  return std::move(*parsed);
}

TEST(PoolRoutingTest, ARequestThatCrossedFromAnotherPoolIsRecognised) {
  auto snapshot = TwoSites(1, 1, {});
  const Topology& topology = *snapshot.topology;
  auto from_client = MessageVia("Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKa\r\n");
  EXPECT_FALSE(CrossedFromAnotherPool(from_client, topology, "pool1.example.com"));
  // Proxied by pool2's fe2 (its Via on top, the client's below).
  auto from_pool2 = MessageVia("Via: SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bKb;rport\r\n"
                               "Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKa\r\n");
  EXPECT_TRUE(CrossedFromAnotherPool(from_pool2, topology, "pool1.example.com"));
  EXPECT_FALSE(CrossedFromAnotherPool(from_pool2, topology, "pool2.example.com")) << "its own pool";
  // Then on to the owner inside pool1: pool2's Via is further down, still seen.
  auto inside_pool1 = MessageVia("Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKc, "
                                 "SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bKb\r\n"
                                 "Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKa\r\n");
  EXPECT_TRUE(CrossedFromAnotherPool(inside_pool1, topology, "pool1.example.com"));
}

}  // namespace
}  // namespace tandem
