#include "backend/backend_admin.h"

#include <gtest/gtest.h>

namespace tandem {
namespace {

TEST(MultiHostDsnTest, NamesBothServersPrimaryFirstAndAsksForAWritableOne) {
  auto dsn = MultiHostDsn("host=127.0.0.1 port=5432 user=postgres dbname=tandem", "host=127.0.0.2 port=5433");
  ASSERT_TRUE(dsn) << dsn.error().message;
  EXPECT_NE(dsn->find("host='127.0.0.1,127.0.0.2'"), std::string::npos) << *dsn;
  EXPECT_NE(dsn->find("port='5432,5433'"), std::string::npos) << *dsn;
  EXPECT_NE(dsn->find("target_session_attrs='read-write'"), std::string::npos);
  EXPECT_NE(dsn->find("dbname='tandem'"), std::string::npos);
}

TEST(MultiHostDsnTest, WithoutMirrorTheDsnIsUnchangedAndGarbageIsAnError) {
  EXPECT_EQ(*MultiHostDsn("host=a", ""), "host=a");
  EXPECT_FALSE(MultiHostDsn("host=a", "this is = not ' a dsn"));
}

TEST(BackendFailoverTest, RefusedWithoutAStandbyChangingNothing) {
  PoolSpec sqlite_pool;
  sqlite_pool.fqdn = "pool1.example.com";
  auto refused = BackendFailover(sqlite_pool, std::nullopt, std::chrono::system_clock::now());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(refused.error().message.find("SQLite"), std::string::npos);

  PoolSpec no_mirror;
  no_mirror.fqdn = "pool2.example.com";
  no_mirror.backend.type = BackendType::kPostgres;
  no_mirror.backend.postgres_dsn = "host=127.0.0.1 port=1";
  refused = BackendFailover(no_mirror, std::nullopt, std::chrono::system_clock::now());
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("mirror_dsn"), std::string::npos);
}

// Nothing listens on ports 1 and 2: the primary is "lost" and the standby would be
// reached only after the sync check, which must refuse first.
PoolSpec LostPrimaryPool() {
  PoolSpec pool;
  pool.fqdn = "pool1.example.com";
  pool.backend.type = BackendType::kPostgres;
  pool.backend.postgres_dsn = "host=127.0.0.1 port=1";
  pool.backend.postgres_mirror_dsn = "host=127.0.0.1 port=2";
  return pool;
}

TEST(BackendFailoverTest, RefusedWhenTheStandbyWasNeverSeenSynchronous) {
  auto refused = BackendFailover(LostPrimaryPool(), std::nullopt, std::chrono::system_clock::now());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(refused.error().message.find("never saw"), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("nothing was changed"), std::string::npos);
}

TEST(BackendFailoverTest, RefusedWhenTheStandbyWasLastSeenAsynchronous) {
  auto now = std::chrono::system_clock::now();
  SyncObservation async{.primary = "127.0.0.1:1", .standby = "127.0.0.1:2", .sync_state = "async",
                        .observed_at = now - std::chrono::seconds(7)};
  auto refused = BackendFailover(LostPrimaryPool(), async, now);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(refused.error().message.find("'async', not synchronous (7 s ago)"), std::string::npos)
      << refused.error().message;

  // Seen synchronous: the check passes, and the failover goes on to the (here
  // unreachable) standby.
  SyncObservation sync = async;
  sync.sync_state = "sync";
  auto unreachable = BackendFailover(LostPrimaryPool(), sync, now);
  ASSERT_FALSE(unreachable);
  EXPECT_EQ(unreachable.error().code, ErrorCode::kUnavailable) << unreachable.error().message;
}

}  // namespace
}  // namespace tandem
