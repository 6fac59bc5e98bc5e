#include "store/sqlite_store.h"

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "store/migrations.h"

namespace tandem {
namespace {

std::string TempDir() {
  std::string dir = (std::filesystem::temp_directory_path() / "tandem-store-XXXXXX").string();
  TANDEM_CHECK(::mkdtemp(dir.data()) != nullptr);
  return dir;
}

TEST(SqliteStoreTest, MigratesToNewestVersionAndIsIdempotent) {
  std::string path = TempDir() + "/pool.db";
  {
    auto store = OpenSqliteStore(path);
    ASSERT_TRUE(store) << store.error().message;
    auto version = (*store)->SchemaVersion();
    ASSERT_TRUE(version);
    EXPECT_EQ(*version, SqliteMigrations().back().version);
  }
  auto reopened = OpenSqliteStore(path);  // migrations already applied: nothing to do
  ASSERT_TRUE(reopened) << reopened.error().message;
  EXPECT_EQ(*(*reopened)->SchemaVersion(), SqliteMigrations().back().version);
}

TEST(SqliteStoreTest, ConcurrentProcessesMigrateOnce) {
  std::string path = TempDir() + "/pool.db";
  std::vector<pid_t> children;
  for (int i = 0; i < 4; ++i) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto store = OpenSqliteStore(path);
      ::_exit(store ? 0 : 1);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  auto store = OpenSqliteStore(path);
  ASSERT_TRUE(store);
  EXPECT_EQ(*(*store)->SchemaVersion(), SqliteMigrations().back().version);
}

TEST(SqliteStoreTest, CmsVersionsAppendInOrder) {
  auto store = OpenSqliteStore(TempDir() + "/pool.db");
  ASSERT_TRUE(store);
  auto empty = (*store)->LatestCmsVersion();
  ASSERT_TRUE(empty);
  EXPECT_FALSE(empty->has_value());

  ASSERT_TRUE((*store)->AppendCmsVersion({1, 1000, "{\"v\":1}"}, 0));
  ASSERT_TRUE((*store)->AppendCmsVersion({2, 2000, "{\"v\":2}"}, 1));
  auto latest = (*store)->LatestCmsVersion();
  ASSERT_TRUE(latest && latest->has_value());
  EXPECT_EQ((*latest)->version, 2);
  EXPECT_EQ((*latest)->document, "{\"v\":2}");
}

TEST(SqliteStoreTest, ConcurrentPublishIsDetected) {
  auto store = OpenSqliteStore(TempDir() + "/pool.db");
  ASSERT_TRUE(store);
  ASSERT_TRUE((*store)->AppendCmsVersion({1, 1000, "a"}, 0));
  // A second writer that still believes version 0 is newest must not overwrite.
  auto stale = (*store)->AppendCmsVersion({1, 1001, "b"}, 0);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ((*(*store)->LatestCmsVersion())->document, "a");
}

UserRecord User(const std::string& name) {
  return UserRecord{"sip:" + name + "@example.com", name, "example.com", "pool1.example.com", "m", "s", "mf", "sf", 42};
}

TEST(SqliteStoreTest, EveryUserMutationAppendsOneChangeInOrder) {
  auto store = OpenSqliteStore(TempDir() + "/pool.db");
  ASSERT_TRUE(store);
  ASSERT_TRUE((*store)->AddUsers({User("alice"), User("bob")}));
  ASSERT_TRUE((*store)->RemoveUser("sip:alice@example.com"));
  auto changes = (*store)->ReadChanges(0, 100);
  ASSERT_TRUE(changes);
  ASSERT_EQ(changes->size(), 3u);
  EXPECT_EQ((*changes)[0].key, "sip:alice@example.com");
  EXPECT_EQ((*changes)[0].op, "upsert");
  EXPECT_EQ((*changes)[0].module, "user");
  EXPECT_EQ((*changes)[0].home_pool, "pool1.example.com");
  EXPECT_EQ((*changes)[1].key, "sip:bob@example.com");
  EXPECT_EQ((*changes)[2].op, "delete");
  EXPECT_LT((*changes)[0].seq, (*changes)[1].seq);
  EXPECT_LT((*changes)[1].seq, (*changes)[2].seq);
  auto after = (*store)->ReadChanges((*changes)[1].seq, 100);
  ASSERT_TRUE(after);
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ((*after)[0].op, "delete");

  auto bob = (*store)->FindUser("bob", "example.com");
  ASSERT_TRUE(bob && bob->has_value());
  EXPECT_EQ((*bob)->ha1_sha256_full, "sf");
  EXPECT_FALSE((*(*store)->FindUser("alice", "example.com")).has_value());
}

TEST(SqliteStoreTest, FailedWriteLeavesNeitherRowsNorChanges) {
  auto store = OpenSqliteStore(TempDir() + "/pool.db");
  ASSERT_TRUE(store);
  ASSERT_TRUE((*store)->AddUsers({User("bob")}));
  // carol is new but bob exists: the whole batch is refused, carol included.
  auto added = (*store)->AddUsers({User("carol"), User("bob")});
  ASSERT_FALSE(added);
  EXPECT_EQ(added.error().code, ErrorCode::kAlreadyExists);
  EXPECT_NE(added.error().message.find("sip:bob@example.com"), std::string::npos);
  EXPECT_EQ((*store)->ListUsers()->size(), 1u);
  EXPECT_EQ((*store)->ReadChanges(0, 100)->size(), 1u);

  auto removed = (*store)->RemoveUser("sip:nobody@example.com");
  ASSERT_FALSE(removed);
  EXPECT_EQ(removed.error().code, ErrorCode::kNotFound);
  EXPECT_EQ((*store)->ReadChanges(0, 100)->size(), 1u);
}

TEST(SqliteStoreTest, UnwritablePathIsAClearError) {
  auto store = OpenSqliteStore("/nonexistent-dir/sub/pool.db");
  ASSERT_FALSE(store);
  EXPECT_NE(store.error().message.find("/nonexistent-dir/sub/pool.db"), std::string::npos);
}

}  // namespace
}  // namespace tandem
