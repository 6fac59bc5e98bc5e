#include "pool/routing_group_map.h"

#include <gtest/gtest.h>

namespace tandem {
namespace {

TEST(RoutingGroupMapTest, EveryGroupHasALiveOwnerAndTheSpreadIsFair) {
  RoutingGroupMap map({"fe3", "fe1", "fe2"});
  auto counts = map.GroupCounts();
  ASSERT_EQ(counts.size(), 3u);
  for (const auto& [server, groups] : counts) {
    EXPECT_GT(groups, kRoutingGroups / 3 - 30) << server;
    EXPECT_LT(groups, kRoutingGroups / 3 + 30) << server;
  }
}

TEST(RoutingGroupMapTest, AServersDeathMovesOnlyItsGroups) {
  RoutingGroupMap before({"fe1", "fe2", "fe3"});
  RoutingGroupMap after({"fe1", "fe3"});
  int moved = 0;
  for (int group = 0; group < kRoutingGroups; ++group) {
    if (before.OwnerOf(group) != "fe2") {
      EXPECT_EQ(after.OwnerOf(group), before.OwnerOf(group)) << "group " << group << " moved needlessly";
    } else {
      ++moved;
      EXPECT_NE(after.OwnerOf(group), "fe2");
    }
  }
  EXPECT_EQ(moved, before.GroupCounts()["fe2"]);
}

TEST(RoutingGroupMapTest, SameLiveSetSameMapWhateverTheOrder) {
  RoutingGroupMap a({"fe1", "fe2", "fe3"});
  RoutingGroupMap b({"fe3", "fe1", "fe2", "fe1"});
  for (int group = 0; group < kRoutingGroups; ++group) EXPECT_EQ(a.OwnerOf(group), b.OwnerOf(group));
  EXPECT_EQ(a.OwnerOfUser("sip:alice@example.com"), b.OwnerOfUser("sip:alice@example.com"));
}

TEST(RoutingGroupMapTest, NoLiveServerOwnsNothing) {
  RoutingGroupMap empty(std::vector<std::string>{});
  EXPECT_EQ(empty.OwnerOf(0), "");
  EXPECT_TRUE(empty.GroupCounts().empty());
}

}  // namespace
}  // namespace tandem
