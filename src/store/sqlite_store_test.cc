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

TEST(SqliteStoreTest, UnwritablePathIsAClearError) {
  auto store = OpenSqliteStore("/nonexistent-dir/sub/pool.db");
  ASSERT_FALSE(store);
  EXPECT_NE(store.error().message.find("/nonexistent-dir/sub/pool.db"), std::string::npos);
}

}  // namespace
}  // namespace tandem
