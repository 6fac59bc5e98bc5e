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
  auto refused = BackendFailover(sqlite_pool);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(refused.error().message.find("SQLite"), std::string::npos);

  PoolSpec no_mirror;
  no_mirror.fqdn = "pool2.example.com";
  no_mirror.backend.type = BackendType::kPostgres;
  no_mirror.backend.postgres_dsn = "host=127.0.0.1 port=1";
  refused = BackendFailover(no_mirror);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("mirror_dsn"), std::string::npos);
}

}  // namespace
}  // namespace tandem
