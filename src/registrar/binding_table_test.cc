#include "registrar/binding_table.h"

#include <gtest/gtest.h>

namespace tandem {
namespace {

constexpr char kAor[] = "sip:alice@example.com";

TEST(BindingTableTest, AddRefreshAndRemove) {
  BindingTable table;
  auto added = table.Apply(kAor, {{"sip:alice@10.0.0.1", 1000, 60}}, false, "call-1", 1, {}, 0);
  ASSERT_TRUE(added);
  ASSERT_EQ(added->size(), 1u);
  EXPECT_EQ((*added)[0].expires_at_ms, 60000);

  auto refreshed = table.Apply(kAor, {{"sip:alice@10.0.0.1", 1000, 120}}, false, "call-1", 2, {}, 10000);
  ASSERT_TRUE(refreshed);
  ASSERT_EQ(refreshed->size(), 1u);
  EXPECT_EQ((*refreshed)[0].expires_at_ms, 130000);

  auto removed = table.Apply(kAor, {{"sip:alice@10.0.0.1", 1000, 0}}, false, "call-1", 3, {}, 20000);
  ASSERT_TRUE(removed);
  EXPECT_TRUE(removed->empty());
  EXPECT_EQ(table.user_count(), 0u);
  EXPECT_EQ(table.binding_count(), 0u);
}

TEST(BindingTableTest, SeveralContactsSortedByQ) {
  BindingTable table;
  ASSERT_TRUE(table.Apply(kAor, {{"sip:desk@10.0.0.1", 500, 60}, {"sip:phone@10.0.0.2", 900, 60}}, false, "c", 1, {}, 0));
  ASSERT_TRUE(table.Apply(kAor, {{"sip:laptop@10.0.0.3", 100, 60}}, false, "d", 1, {}, 0));
  auto bindings = table.Lookup(kAor, 1000);
  ASSERT_EQ(bindings.size(), 3u);
  EXPECT_EQ(bindings[0].contact_uri, "sip:phone@10.0.0.2");
  EXPECT_EQ(bindings[1].contact_uri, "sip:desk@10.0.0.1");
  EXPECT_EQ(bindings[2].contact_uri, "sip:laptop@10.0.0.3");
  EXPECT_EQ(table.binding_count(), 3u);
}

TEST(BindingTableTest, StarRemovesEverything) {
  BindingTable table;
  ASSERT_TRUE(table.Apply(kAor, {{"sip:a@h", 1000, 60}, {"sip:b@h", 1000, 60}}, false, "c", 1, {}, 0));
  auto cleared = table.Apply(kAor, {}, true, "c", 2, {}, 0);
  ASSERT_TRUE(cleared);
  EXPECT_TRUE(cleared->empty());
  EXPECT_TRUE(table.Lookup(kAor, 0).empty());
}

TEST(BindingTableTest, OutOfOrderCSeqForSameCallIdIsRefusedAndChangesNothing) {
  BindingTable table;
  ASSERT_TRUE(table.Apply(kAor, {{"sip:a@h", 1000, 60}}, false, "c", 5, {}, 0));
  auto stale = table.Apply(kAor, {{"sip:a@h", 1000, 0}}, false, "c", 5, {}, 0);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(table.Lookup(kAor, 0).size(), 1u);
  // Another Call-ID (another device) may use any CSeq.
  EXPECT_TRUE(table.Apply(kAor, {{"sip:b@h", 1000, 60}}, false, "other", 1, {}, 0));
}

TEST(BindingTableTest, ExpiredBindingsVanishAndAreSwept) {
  BindingTable table;
  ASSERT_TRUE(table.Apply(kAor, {{"sip:a@h", 1000, 60}}, false, "c", 1, {}, 0));
  ASSERT_TRUE(table.Apply("sip:bob@example.com", {{"sip:b@h", 1000, 120}}, false, "c", 1, {}, 0));
  EXPECT_TRUE(table.Lookup(kAor, 60000).empty());
  EXPECT_EQ(table.SweepExpired(60000), 1u);
  EXPECT_EQ(table.user_count(), 1u);
  EXPECT_EQ(table.binding_count(), 1u);
}

TEST(BindingTableTest, ContactLimitPerUser) {
  BindingTable table(2);
  ASSERT_TRUE(table.Apply(kAor, {{"sip:a@h", 1000, 60}, {"sip:b@h", 1000, 60}}, false, "c", 1, {}, 0));
  auto third = table.Apply(kAor, {{"sip:c@h", 1000, 60}}, false, "d", 1, {}, 0);
  ASSERT_FALSE(third);
  EXPECT_EQ(table.Lookup(kAor, 0).size(), 2u);
}

}  // namespace
}  // namespace tandem
