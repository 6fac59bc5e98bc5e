#include "users/user_cache.h"

#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "users/user_service.h"

namespace tandem {
namespace {

constexpr char kPool[] = "pool1.example.com";

class UserCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("user_cache_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto store = OpenSqliteStore((dir_ / "pool.db").string());
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
    ASSERT_TRUE(store_->AddUsers({User("alice"), User("bob")}));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static UserRecord User(const std::string& name, const std::string& pool = kPool) {
    auto user = MakeUserRecord("sip:" + name + "@example.com", pool, "secret");
    EXPECT_TRUE(user);
    return *user;
  }
  static bool Exists(UserCache& cache, const std::string& name) {
    auto found = cache.Find(name, "example.com");
    EXPECT_TRUE(found) << found.error().message;
    return found && found->has_value();
  }

  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(UserCacheTest, AnswersRepeatedLookupsFromMemory) {
  UserCache cache(*store_);
  ASSERT_TRUE(cache.Refresh());
  auto first = cache.Find("alice", "example.com");
  ASSERT_TRUE(first && first->has_value());
  EXPECT_EQ(cache.hits(), 0u);
  auto second = cache.Find("alice", "example.com");
  ASSERT_TRUE(second && second->has_value());
  EXPECT_EQ(cache.hits(), 1u);
  const UserRecord& stored = **first;
  const UserRecord& cached = **second;
  EXPECT_EQ(cached.uri, stored.uri);
  EXPECT_EQ(cached.username, stored.username);
  EXPECT_EQ(cached.domain, stored.domain);
  EXPECT_EQ(cached.home_pool, kPool);
  EXPECT_EQ(cached.ha1_md5, stored.ha1_md5);
  EXPECT_EQ(cached.ha1_sha256, stored.ha1_sha256);
  EXPECT_EQ(cached.ha1_md5_full, stored.ha1_md5_full);
  EXPECT_EQ(cached.ha1_sha256_full, stored.ha1_sha256_full);
  EXPECT_EQ(cached.created_at_ms, stored.created_at_ms);
}

TEST_F(UserCacheTest, UnknownUsersAreNotCachedSoANewUserIsFoundAtOnce) {
  UserCache cache(*store_);
  ASSERT_TRUE(cache.Refresh());
  EXPECT_FALSE(Exists(cache, "carol"));
  ASSERT_TRUE(store_->AddUsers({User("carol")}));
  EXPECT_TRUE(Exists(cache, "carol"));
}

TEST_F(UserCacheTest, ARemovedUserIsDroppedByTheNextPollAndOthersStay) {
  UserCache cache(*store_);
  ASSERT_TRUE(cache.Refresh());
  ASSERT_TRUE(Exists(cache, "alice"));
  ASSERT_TRUE(Exists(cache, "bob"));
  ASSERT_TRUE(store_->RemoveUser("sip:alice@example.com"));  // as any server of the pool would
  ASSERT_TRUE(cache.Refresh());
  EXPECT_FALSE(Exists(cache, "alice"));
  uint64_t hits = cache.hits();
  EXPECT_TRUE(Exists(cache, "bob"));
  EXPECT_EQ(cache.hits(), hits + 1) << "bob was not touched by alice's removal";
}

TEST_F(UserCacheTest, ImportedPartnerUsersDropEverything) {
  UserCache cache(*store_);
  ASSERT_TRUE(cache.Refresh());
  ASSERT_TRUE(Exists(cache, "alice"));
  ASSERT_EQ(cache.size(), 1u);
  UserRecord dave = User("dave", "pool2.example.com");
  ASSERT_TRUE(store_->ApplyChanges("pool2.example.com", "user",
                                   {{1, 0, "user", dave.home_pool, dave.uri, "upsert", UserPayloadJson(dave)}}));
  ASSERT_TRUE(cache.Refresh());
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_TRUE(Exists(cache, "dave"));
}

TEST_F(UserCacheTest, ManyChangesAtOnceDropEverything) {
  UserCache cache(*store_, UserCacheOptions{.max_changes_per_poll = 2});
  ASSERT_TRUE(cache.Refresh());
  ASSERT_TRUE(Exists(cache, "bob"));
  ASSERT_TRUE(store_->AddUsers({User("u1"), User("u2"), User("u3")}));
  ASSERT_TRUE(cache.Refresh());
  EXPECT_EQ(cache.size(), 0u);
}

TEST_F(UserCacheTest, NothingIsCachedBeforeTheFirstPoll) {
  UserCache cache(*store_);
  ASSERT_TRUE(Exists(cache, "alice"));
  ASSERT_TRUE(Exists(cache, "alice"));
  EXPECT_EQ(cache.hits(), 0u);
  EXPECT_EQ(cache.size(), 0u);
}

TEST_F(UserCacheTest, HoldsUpToTwiceTheCapacityFirstInFirstOut) {
  std::vector<UserRecord> users;
  for (int i = 0; i < 5; ++i) users.push_back(User("user" + std::to_string(i)));
  ASSERT_TRUE(store_->AddUsers(users));
  UserCache cache(*store_, UserCacheOptions{.capacity = 2});
  ASSERT_TRUE(cache.Refresh());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Exists(cache, "user" + std::to_string(i)));
  EXPECT_EQ(cache.size(), 4u);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Exists(cache, "user" + std::to_string(i)));
  EXPECT_EQ(cache.hits(), 4u) << "a steady set of twice the capacity stays";
  ASSERT_TRUE(Exists(cache, "user4"));  // the oldest half (user0, user1) goes
  EXPECT_EQ(cache.size(), 3u);
  ASSERT_TRUE(Exists(cache, "user2"));
  ASSERT_TRUE(Exists(cache, "user0"));
  EXPECT_EQ(cache.hits(), 5u);
}

TEST_F(UserCacheTest, TheBackgroundThreadPollsUntilStopped) {
  UserCache cache(*store_, UserCacheOptions{.poll_interval = std::chrono::milliseconds(1)});
  cache.Start();
  ASSERT_TRUE(Exists(cache, "alice"));
  ASSERT_TRUE(Exists(cache, "alice"));
  EXPECT_EQ(cache.hits(), 1u);
  cache.Stop();
}

}  // namespace
}  // namespace tandem
