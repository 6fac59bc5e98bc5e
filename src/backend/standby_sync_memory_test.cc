#include "backend/standby_sync_memory.h"

#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "common/file_util.h"

namespace tandem {
namespace {

class StandbySyncMemoryTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("standby-sync-" + std::to_string(::getpid()) + "-" + testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    pool_.fqdn = "pool1.example.com";
    pool_.backend.type = BackendType::kPostgres;
    pool_.backend.postgres_dsn = "host=10.0.0.1 port=5432 dbname=tandem";
    pool_.backend.postgres_mirror_dsn = "host=10.0.0.2 port=5433";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Path() const { return (dir_ / "backend-sync.json").string(); }
  SyncObservation Seen(const std::string& state, int at_seconds) const {
    return {.primary = "10.0.0.1:5432", .standby = "10.0.0.2:5433", .sync_state = state,
            .observed_at = std::chrono::system_clock::time_point(std::chrono::seconds(at_seconds))};
  }

  std::filesystem::path dir_;
  PoolSpec pool_;
};

TEST_F(StandbySyncMemoryTest, RemembersTheLastStateAcrossARestart) {
  {
    StandbySyncMemory memory(Path());
    EXPECT_FALSE(memory.Last(pool_));
    memory.Record(pool_.fqdn, Seen("sync", 1000));
    memory.Record(pool_.fqdn, Seen("async", 1001));
  }
  StandbySyncMemory restarted(Path());
  auto last = restarted.Last(pool_);
  ASSERT_TRUE(last);
  EXPECT_EQ(last->sync_state, "async");
  EXPECT_EQ(last->observed_at, std::chrono::system_clock::time_point(std::chrono::seconds(1001)));
}

TEST_F(StandbySyncMemoryTest, TheFileIsRewrittenOnChangesAndEvery30sNotOnEachObservation) {
  StandbySyncMemory memory(Path());
  memory.Record(pool_.fqdn, Seen("sync", 1000));
  memory.Record(pool_.fqdn, Seen("sync", 1010));  // same state, 10 s later: memory only
  EXPECT_EQ(StandbySyncMemory(Path()).Last(pool_)->observed_at,
            std::chrono::system_clock::time_point(std::chrono::seconds(1000)));
  EXPECT_EQ(memory.Last(pool_)->observed_at, std::chrono::system_clock::time_point(std::chrono::seconds(1010)));
  memory.Record(pool_.fqdn, Seen("sync", 1030));
  EXPECT_EQ(StandbySyncMemory(Path()).Last(pool_)->observed_at,
            std::chrono::system_clock::time_point(std::chrono::seconds(1030)));
}

TEST_F(StandbySyncMemoryTest, AnObservationOfAnotherPairDoesNotCount) {
  StandbySyncMemory memory(Path());
  memory.Record(pool_.fqdn, Seen("sync", 1000));
  PoolSpec moved = pool_;
  moved.backend.postgres_mirror_dsn = "host=10.0.0.3 port=5433";
  EXPECT_FALSE(memory.Last(moved));
  EXPECT_TRUE(memory.Last(pool_));
}

TEST_F(StandbySyncMemoryTest, ADamagedFileIsAnEmptyMemory) {
  ASSERT_TRUE(WriteFileAtomically(Path(), "{\"pools\": {\"pool1.example.com\": {\"sync_state\": 7}}"));
  EXPECT_FALSE(StandbySyncMemory(Path()).Last(pool_));
  ASSERT_TRUE(WriteFileAtomically(Path(), "{\"pools\": {\"pool1.example.com\": {\"primary\": \"10.0.0.1:5432\"}}}"));
  EXPECT_FALSE(StandbySyncMemory(Path()).Last(pool_));
}

}  // namespace
}  // namespace tandem
