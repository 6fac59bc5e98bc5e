#include "pool/pool_soft_state.h"

#include <filesystem>

#include <gtest/gtest.h>

namespace tandem {
namespace {

constexpr char kPool[] = "pool1.example.com";

// One server's soft-state tables, wired to the shared store.
struct ServerTables {
  BindingTable bindings;
  PublicationStore publications;
  SubscriptionTable subscriptions;
  MetricsRegistry metrics;
  PoolSoftState soft_state;

  ServerTables(const std::string& id, Store& store,
               std::chrono::milliseconds flush_interval = SoftStateOptions().flush_interval)
      : soft_state(SoftStateOptions{.pool = kPool, .server_id = id, .flush_interval = flush_interval}, store,
                   bindings, publications, subscriptions, metrics) {}
};

class PoolSoftStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("pool_soft_state_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto store = OpenSqliteStore((dir_ / "pool.db").string());
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A user whose routing group `server` owns in `map`.
  static std::string UserOwnedBy(const RoutingGroupMap& map, const std::string& server, int skip = 0) {
    for (int i = 0;; ++i) {
      std::string aor = "sip:user" + std::to_string(i) + "@example.com";
      if (map.OwnerOfUser(aor) == server && skip-- == 0) return aor;
    }
  }

  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(PoolSoftStateTest, NewOwnerLoadsExactlyTheGroupsItGainsAndTheLoserForgetsThem) {
  RoutingGroupMap both({"fe1", "fe2"});
  RoutingGroupMap only_fe2({"fe2"});
  ServerTables fe1("fe1", *store_);
  ServerTables fe2("fe2", *store_);
  fe1.soft_state.Start();
  fe2.soft_state.Start();
  ASSERT_TRUE(fe1.soft_state.OnOwnershipChanged(RoutingGroupMap(), both));
  ASSERT_TRUE(fe2.soft_state.OnOwnershipChanged(RoutingGroupMap(), both));

  const int64_t now = NowUnixMillis();
  std::string moving = UserOwnedBy(both, "fe1");
  std::string staying = UserOwnedBy(both, "fe2");
  sip::MessageSource from{.protocol = sip::TransportProtocol::kUdp, .address = "10.0.0.7", .port = 5070};
  ASSERT_TRUE(fe1.bindings.Apply(moving, {{"sip:dev@10.0.0.7:5070", 500, 600}}, false, "call-a", 3, from, now));
  ASSERT_TRUE(fe2.bindings.Apply(staying, {{"sip:dev@10.0.0.8:5070", 1000, 600}}, false, "call-b", 1, from, now));
  Subscription watch{.call_id = "sub-1", .our_tag = "t1", .presentity = moving, .watcher = staying,
                     .from_header = "<sip:w@example.com>;tag=w", .to_header = "<" + moving + ">;tag=t1",
                     .watcher_contact = "sip:w@10.0.0.8:5070", .source = from, .next_cseq = 1,
                     .expires_at_ms = now + 600000};
  fe1.subscriptions.Upsert(watch);
  ASSERT_EQ(fe1.subscriptions.NextCSeq("sub-1", "t1"), 1u);
  ASSERT_EQ(fe1.publications.Publish(moving, {.state = PresenceState{BasicStatus::kOpen, "busy"}, .expires_seconds = 600},
                                     now)
                .status,
            200);
  ASSERT_TRUE(fe1.soft_state.Flush());
  ASSERT_TRUE(fe2.soft_state.Flush());

  // fe1 dies: fe2 gains fe1's groups and loads exactly their rows.
  ASSERT_TRUE(fe2.soft_state.OnOwnershipChanged(both, only_fe2));
  auto loaded = fe2.bindings.Lookup(moving, now);
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].contact_uri, "sip:dev@10.0.0.7:5070");
  EXPECT_EQ(loaded[0].q_millis, 500);
  EXPECT_EQ(loaded[0].call_id, "call-a");
  EXPECT_EQ(loaded[0].cseq, 3u);
  EXPECT_EQ(loaded[0].source.port, 5070);
  EXPECT_EQ(fe2.bindings.user_count(), 2u);
  auto restored = fe2.subscriptions.Find("sub-1", "t1");
  ASSERT_TRUE(restored);
  EXPECT_EQ(restored->next_cseq, 2u) << "the next NOTIFY continues the dialog's CSeq";
  auto composed = fe2.publications.Compose(moving, now);
  ASSERT_TRUE(composed);
  EXPECT_EQ(composed->note, "busy");

  // fe1 comes back: fe2 hands those groups back and forgets their users.
  ASSERT_TRUE(fe2.soft_state.OnOwnershipChanged(only_fe2, both));
  EXPECT_TRUE(fe2.bindings.Lookup(moving, now).empty());
  EXPECT_FALSE(fe2.subscriptions.Find("sub-1", "t1"));
  EXPECT_EQ(fe2.bindings.Lookup(staying, now).size(), 1u);
  fe1.soft_state.Stop();
  fe2.soft_state.Stop();
}

TEST_F(PoolSoftStateTest, RemovalsAreWrittenBackAndBatchesCoalesce) {
  RoutingGroupMap solo({"fe1"});
  ServerTables fe1("fe1", *store_);
  fe1.soft_state.Start();
  ASSERT_TRUE(fe1.soft_state.OnOwnershipChanged(RoutingGroupMap(), solo));
  const int64_t now = NowUnixMillis();
  sip::MessageSource from{.protocol = sip::TransportProtocol::kUdp, .address = "10.0.0.7", .port = 5070};
  for (uint32_t cseq = 1; cseq <= 10; ++cseq) {
    ASSERT_TRUE(fe1.bindings.Apply("sip:a@example.com", {{"sip:a@10.0.0.7", 1000, 600}}, false, "c", cseq, from,
                                   now));
  }
  ASSERT_TRUE(fe1.bindings.Apply("sip:b@example.com", {{"sip:b@10.0.0.7", 1000, 600}}, false, "c", 1, from, now));
  ASSERT_TRUE(fe1.bindings.Apply("sip:b@example.com", {{"sip:b@10.0.0.7", 1000, 0}}, false, "c", 2, from, now));
  ASSERT_TRUE(fe1.soft_state.Flush());
  std::vector<int> all(kRoutingGroups);
  for (int g = 0; g < kRoutingGroups; ++g) all[g] = g;
  auto rows = store_->LoadSoftState(kPool, all, now);
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 1u) << "b unregistered: its row is gone";
  EXPECT_EQ((*rows)[0].key, "sip:a@example.com");
  EXPECT_NE((*rows)[0].payload.find("\"cseq\":10"), std::string::npos) << "the newest state wins";
  fe1.soft_state.Stop();
}

TEST_F(PoolSoftStateTest, OddBytesInABindingStillWriteBackAndLoad) {
  RoutingGroupMap solo({"fe1"});
  ServerTables fe1("fe1", *store_);
  fe1.soft_state.Start();
  ASSERT_TRUE(fe1.soft_state.OnOwnershipChanged(RoutingGroupMap(), solo));
  const int64_t now = NowUnixMillis();
  sip::MessageSource from{.protocol = sip::TransportProtocol::kTcp, .address = "10.0.0.7", .port = 5070};
  const std::string odd = "sip:\"quoted\"\\back\x01\tslash@h\xc3\xa9";  // quotes, backslash, controls, UTF-8
  ASSERT_TRUE(fe1.bindings.Apply("sip:a@example.com", {{odd, 1000, 600}}, false, "call\xff", 1, from, now));
  fe1.soft_state.Stop();

  // Stopping wrote everything back: a successor loads it.
  ServerTables fe2("fe2", *store_);
  ASSERT_TRUE(fe2.soft_state.OnOwnershipChanged(RoutingGroupMap(), RoutingGroupMap({"fe2"})));
  auto loaded = fe2.bindings.Lookup("sip:a@example.com", now);
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].contact_uri, odd);
  EXPECT_EQ(loaded[0].call_id, "call\u00ff") << "a byte that is not UTF-8 loads as its code point";
  EXPECT_EQ(loaded[0].source.protocol, sip::TransportProtocol::kTcp);
  EXPECT_EQ(loaded[0].expires_at_ms, now + 600000);
}

TEST_F(PoolSoftStateTest, AHandOverWritesWhatWasHeldAndNeverRemovesTheNewOwnersRows) {
  RoutingGroupMap both({"fe1", "fe2"});
  RoutingGroupMap only_fe2({"fe2"});
  ServerTables fe1("fe1", *store_, std::chrono::hours(1));  // writes only when told to
  fe1.soft_state.Start();
  ASSERT_TRUE(fe1.soft_state.OnOwnershipChanged(RoutingGroupMap(), both));
  const int64_t now = NowUnixMillis();
  const std::string moving = UserOwnedBy(both, "fe1");
  sip::MessageSource from{.protocol = sip::TransportProtocol::kUdp, .address = "10.0.0.7", .port = 5070};
  ASSERT_TRUE(fe1.bindings.Apply(moving, {{"sip:dev@10.0.0.7", 1000, 600}}, false, "c", 1, from, now));
  ASSERT_TRUE(fe1.soft_state.Flush());
  ASSERT_TRUE(fe1.bindings.Apply(moving, {{"sip:dev@10.0.0.7", 1000, 600}}, false, "c", 2, from, now));

  // fe1 hands the group over: the change it still held goes to the store first.
  ASSERT_TRUE(fe1.soft_state.OnOwnershipChanged(both, only_fe2));
  std::vector<int> group{RoutingGroupOf(moving)};
  auto rows = store_->LoadSoftState(kPool, group, now);
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_NE((*rows)[0].payload.find("\"cseq\":2"), std::string::npos) << (*rows)[0].payload;

  // A REGISTER fe1 still served before its SIP side saw the new routing: not written
  // from here, and the user (gone from fe1's table) is not written as unregistered.
  ASSERT_TRUE(fe1.bindings.Apply(moving, {{"sip:dev@10.0.0.7", 1000, 600}}, false, "c", 3, from, now));
  fe1.bindings.RemoveUsersIf([](std::string_view) { return true; });
  ASSERT_TRUE(fe1.soft_state.Flush());
  rows = store_->LoadSoftState(kPool, group, now);
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_NE((*rows)[0].payload.find("\"cseq\":2"), std::string::npos) << (*rows)[0].payload;

  // Regained: its users are written back from here again.
  ASSERT_TRUE(fe1.soft_state.OnOwnershipChanged(only_fe2, both));
  ASSERT_TRUE(fe1.bindings.Apply(moving, {{"sip:dev@10.0.0.7", 1000, 600}}, false, "c", 4, from, now));
  ASSERT_TRUE(fe1.soft_state.Flush());
  rows = store_->LoadSoftState(kPool, group, now);
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_NE((*rows)[0].payload.find("\"cseq\":4"), std::string::npos) << (*rows)[0].payload;
  fe1.soft_state.Stop();
}

}  // namespace
}  // namespace tandem
