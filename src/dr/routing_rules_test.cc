#include "dr/routing_rules.h"

#include <gtest/gtest.h>

namespace tandem {
namespace {

Topology TwoPairedPoolsAndOneAlone() {
  Topology topology;
  PoolSpec pool1{.fqdn = "pool1.example.com"};
  pool1.backup_pool = "pool2.example.com";
  PoolSpec pool2{.fqdn = "pool2.example.com"};
  pool2.backup_pool = "pool1.example.com";
  PoolSpec alone{.fqdn = "pool3.example.com"};
  topology.pools = {pool1, pool2, alone};
  return topology;
}

RoutingUpdate Failover(std::string pool, bool disaster = false) {
  return {RoutingUpdate::Action::kFailover, std::move(pool), disaster, {{"user", 7}}, 1000};
}
RoutingUpdate Failback(std::string pool) { return {RoutingUpdate::Action::kFailback, std::move(pool), false, {}, 2000}; }

TEST(RoutingRulesTest, FailoverMovesUsersToTheBackupPoolAndRaisesTheEpoch) {
  Topology topology = TwoPairedPoolsAndOneAlone();
  CmsDocument document;
  document.master_pool = "pool2.example.com";
  ASSERT_TRUE(CheckRoutingUpdate(document, topology, Failover("pool1.example.com")));
  ApplyRoutingUpdate(document, topology, Failover("pool1.example.com"));
  EXPECT_EQ(document.ServingPoolOf("pool1.example.com"), "pool2.example.com");
  EXPECT_EQ(document.ServingPoolOf("pool2.example.com"), "pool2.example.com");
  EXPECT_EQ(document.routing_epoch, 2);
  EXPECT_EQ(document.routing["pool1.example.com"].applied_seq["user"], 7);

  ASSERT_TRUE(CheckRoutingUpdate(document, topology, Failback("pool1.example.com")));
  ApplyRoutingUpdate(document, topology, Failback("pool1.example.com"));
  EXPECT_EQ(document.ServingPoolOf("pool1.example.com"), "pool1.example.com");
  EXPECT_EQ(document.routing_epoch, 3);
}

TEST(RoutingRulesTest, OrderingRuleRefusesFailingOverThePoolServingAnother) {
  Topology topology = TwoPairedPoolsAndOneAlone();
  CmsDocument document;
  ApplyRoutingUpdate(document, topology, Failover("pool1.example.com"));
  auto refused = CheckRoutingUpdate(document, topology, Failover("pool2.example.com"));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(refused.error().message.find("fail pool1.example.com back first"), std::string::npos)
      << refused.error().message;
  EXPECT_FALSE(CheckRoutingUpdate(document, topology, Failover("pool1.example.com")));  // already failed over
}

TEST(RoutingRulesTest, RefusalsNameTheReason) {
  Topology topology = TwoPairedPoolsAndOneAlone();
  CmsDocument document;
  document.master_pool = "pool1.example.com";
  auto unpaired = CheckRoutingUpdate(document, topology, Failover("pool3.example.com"));
  ASSERT_FALSE(unpaired);
  EXPECT_NE(unpaired.error().message.find("no backup pool"), std::string::npos);
  auto unknown = CheckRoutingUpdate(document, topology, Failover("pool9.example.com"));
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
  auto not_failed_over = CheckRoutingUpdate(document, topology, Failback("pool1.example.com"));
  ASSERT_FALSE(not_failed_over);
  EXPECT_NE(not_failed_over.error().message.find("is not failed over"), std::string::npos);
  auto cms_master = CheckRoutingUpdate(document, topology, Failover("pool1.example.com", /*disaster=*/true));
  ASSERT_FALSE(cms_master);
  EXPECT_NE(cms_master.error().message.find("cms failover"), std::string::npos) << cms_master.error().message;
  EXPECT_TRUE(CheckRoutingUpdate(document, topology, Failover("pool1.example.com", /*disaster=*/false)));
}

TEST(RoutingRulesTest, UpdatesAndDocumentsRoundTripThroughJson) {
  auto update = RoutingUpdate::FromJson(Failover("pool1.example.com", true).ToJson());
  ASSERT_TRUE(update);
  EXPECT_TRUE(update->disaster);
  EXPECT_EQ(update->applied_seq["user"], 7);
  EXPECT_FALSE(RoutingUpdate::FromJson(R"({"action":"explode","pool":"p","disaster":false})"));

  Topology topology = TwoPairedPoolsAndOneAlone();
  CmsDocument document;
  document.master_pool = "pool2.example.com";
  ApplyRoutingUpdate(document, topology, Failover("pool1.example.com", true));
  auto parsed = CmsDocument::FromJson(document.ToJson());
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->ServingPoolOf("pool1.example.com"), "pool2.example.com");
  EXPECT_TRUE(parsed->routing["pool1.example.com"].disaster);
  EXPECT_EQ(parsed->routing_epoch, 2);
}

}  // namespace
}  // namespace tandem
