#include "auth/nonce.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace tandem {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr std::string_view kRealm = "example.com";

NonceManagerOptions Options() {
  NonceManagerOptions options;
  options.secret = "test secret";
  return options;
}

TEST(NonceManagerTest, IssuedNonceIsValidAndWellFormed) {
  FakeClock clock;
  NonceManager nonces(Options(), clock);
  std::string nonce = nonces.Issue(kRealm);
  EXPECT_EQ(nonce.size(), 75u);
  for (char c : nonce) {
    EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') << nonce;
  }
  EXPECT_EQ(nonces.Verify(nonce, kRealm), NonceStatus::kValid);
}

TEST(NonceManagerTest, NoncesAreUnique) {
  FakeClock clock;
  NonceManager nonces(Options(), clock);
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(seen.insert(nonces.Issue(kRealm)).second);
}

TEST(NonceManagerTest, ExpiresToStale) {
  FakeClock clock;
  NonceManagerOptions options = Options();
  options.lifetime = seconds(300);
  NonceManager nonces(options, clock);
  std::string nonce = nonces.Issue(kRealm);
  clock.Advance(seconds(300));
  EXPECT_EQ(nonces.Verify(nonce, kRealm), NonceStatus::kValid);
  clock.Advance(milliseconds(1));
  EXPECT_EQ(nonces.Verify(nonce, kRealm), NonceStatus::kStale);
  EXPECT_EQ(nonces.VerifyAndRecordCount(nonce, kRealm, 1), NonceStatus::kStale);
  clock.Advance(seconds(100000));
  EXPECT_EQ(nonces.Verify(nonce, kRealm), NonceStatus::kStale);
}

TEST(NonceManagerTest, ConfigurableLifetime) {
  FakeClock clock;
  NonceManagerOptions options = Options();
  options.lifetime = seconds(10);
  NonceManager nonces(options, clock);
  std::string nonce = nonces.Issue(kRealm);
  clock.Advance(seconds(11));
  EXPECT_EQ(nonces.Verify(nonce, kRealm), NonceStatus::kStale);
}

TEST(NonceManagerTest, FutureNonceBeyondSkewIsInvalid) {
  FakeClock clock;
  NonceManager nonces(Options(), clock);
  std::string nonce = nonces.Issue(kRealm);
  clock.Advance(-seconds(5));
  EXPECT_EQ(nonces.Verify(nonce, kRealm), NonceStatus::kValid);  // within the skew
  clock.Advance(-seconds(1));
  EXPECT_EQ(nonces.Verify(nonce, kRealm), NonceStatus::kInvalid);
}

TEST(NonceManagerTest, TamperingIsDetected) {
  FakeClock clock;
  NonceManager nonces(Options(), clock);
  std::string nonce = nonces.Issue(kRealm);
  // Flip each character of the first 74 (the 75th carries two padding bits that
  // do not reach the decoded bytes) to another base64url character.
  for (size_t i = 0; i + 1 < nonce.size(); ++i) {
    std::string tampered = nonce;
    tampered[i] = tampered[i] == 'A' ? 'B' : 'A';
    EXPECT_EQ(nonces.Verify(tampered, kRealm), NonceStatus::kInvalid) << "position " << i;
  }
}

TEST(NonceManagerTest, GarbageIsInvalid) {
  FakeClock clock;
  NonceManager nonces(Options(), clock);
  std::string nonce = nonces.Issue(kRealm);
  const std::vector<std::string> garbage = {
      "",
      "x",
      nonce.substr(1),
      nonce + "A",
      std::string(75, 'A'),
      std::string(75, '='),
      nonce.substr(0, 74) + "=",
      nonce.substr(0, 74) + "+",
      nonce.substr(0, 74) + "/",
      std::string(75, '\0'),
      std::string(10000, 'A'),
  };
  for (const std::string& g : garbage) {
    EXPECT_EQ(nonces.Verify(g, kRealm), NonceStatus::kInvalid) << g;
    EXPECT_EQ(nonces.VerifyAndRecordCount(g, kRealm, 1), NonceStatus::kInvalid) << g;
  }
  EXPECT_EQ(nonces.tracked_count(), 0u);
}

TEST(NonceManagerTest, BoundToRealmAndSecret) {
  FakeClock clock;
  NonceManager nonces(Options(), clock);
  std::string nonce = nonces.Issue(kRealm);
  EXPECT_EQ(nonces.Verify(nonce, "other.example.com"), NonceStatus::kInvalid);

  NonceManagerOptions other_options = Options();
  other_options.secret = "another secret";
  NonceManager other(other_options, clock);
  EXPECT_EQ(other.Verify(nonce, kRealm), NonceStatus::kInvalid);

  // Same secret (e.g. another server of the pool): accepted.
  NonceManager peer(Options(), clock);
  EXPECT_EQ(peer.Verify(nonce, kRealm), NonceStatus::kValid);
}

TEST(NonceManagerTest, GeneratedSecretsDiffer) {
  FakeClock clock;
  NonceManager a(NonceManagerOptions{}, clock);
  NonceManager b(NonceManagerOptions{}, clock);
  std::string nonce = a.Issue(kRealm);
  EXPECT_EQ(a.Verify(nonce, kRealm), NonceStatus::kValid);
  EXPECT_EQ(b.Verify(nonce, kRealm), NonceStatus::kInvalid);
}

TEST(NonceManagerTest, NonceCountReplayIsRejected) {
  FakeClock clock;
  NonceManager nonces(Options(), clock);
  std::string nonce = nonces.Issue(kRealm);
  EXPECT_EQ(nonces.VerifyAndRecordCount(nonce, kRealm, 1), NonceStatus::kValid);
  EXPECT_EQ(nonces.VerifyAndRecordCount(nonce, kRealm, 1), NonceStatus::kReplayed);
  EXPECT_EQ(nonces.VerifyAndRecordCount(nonce, kRealm, 2), NonceStatus::kValid);
  EXPECT_EQ(nonces.VerifyAndRecordCount(nonce, kRealm, 5), NonceStatus::kValid);  // gaps are fine
  EXPECT_EQ(nonces.VerifyAndRecordCount(nonce, kRealm, 3), NonceStatus::kReplayed);
  EXPECT_EQ(nonces.VerifyAndRecordCount(nonce, kRealm, 5), NonceStatus::kReplayed);
  EXPECT_EQ(nonces.VerifyAndRecordCount(nonce, kRealm, 6), NonceStatus::kValid);
  // Verify alone neither records nor reports replays.
  EXPECT_EQ(nonces.Verify(nonce, kRealm), NonceStatus::kValid);

  std::string other = nonces.Issue(kRealm);
  EXPECT_EQ(nonces.VerifyAndRecordCount(other, kRealm, 0),
            NonceStatus::kReplayed);  // nc starts at 1
  EXPECT_EQ(nonces.VerifyAndRecordCount(other, kRealm, 1), NonceStatus::kValid);
  EXPECT_EQ(nonces.tracked_count(), 2u);
}

TEST(NonceManagerTest, RecordCountAfterVerifyChecksAgeAndReplay) {
  FakeClock clock;
  NonceManager nonces(Options(), clock);
  std::string nonce = nonces.Issue(kRealm);
  NonceManager::Verified verified;
  ASSERT_EQ(nonces.Verify(nonce, kRealm, &verified), NonceStatus::kValid);
  EXPECT_EQ(nonces.RecordCount(verified, 1), NonceStatus::kValid);
  EXPECT_EQ(nonces.RecordCount(verified, 1), NonceStatus::kReplayed);
  EXPECT_EQ(nonces.VerifyAndRecordCount(nonce, kRealm, 1), NonceStatus::kReplayed) << "one record per nonce";
  clock.Advance(std::chrono::seconds(301));
  EXPECT_EQ(nonces.RecordCount(verified, 2), NonceStatus::kStale) << "the age is checked again";
}

TEST(NonceManagerTest, ExpiredEntriesAreEvicted) {
  FakeClock clock;
  NonceManager nonces(Options(), clock);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(nonces.VerifyAndRecordCount(nonces.Issue(kRealm), kRealm, 1), NonceStatus::kValid);
  }
  EXPECT_EQ(nonces.tracked_count(), 50u);
  clock.Advance(seconds(301));
  std::string fresh = nonces.Issue(kRealm);
  EXPECT_EQ(nonces.VerifyAndRecordCount(fresh, kRealm, 1), NonceStatus::kValid);
  EXPECT_EQ(nonces.tracked_count(), 1u);
}

TEST(NonceManagerTest, TableIsCappedWithoutOpeningReplays) {
  FakeClock clock;
  NonceManagerOptions options = Options();
  options.max_tracked_nonces = 3;
  NonceManager nonces(options, clock);
  std::vector<std::string> issued;
  for (int i = 0; i < 5; ++i) {
    issued.push_back(nonces.Issue(kRealm));
    clock.Advance(milliseconds(10));
  }
  for (const std::string& nonce : issued) {
    EXPECT_EQ(nonces.VerifyAndRecordCount(nonce, kRealm, 1), NonceStatus::kValid);
    EXPECT_LE(nonces.tracked_count(), 3u);
  }
  // The two oldest were forgotten: reusing them must not pass as new.
  EXPECT_EQ(nonces.VerifyAndRecordCount(issued[0], kRealm, 1), NonceStatus::kStale);
  EXPECT_EQ(nonces.VerifyAndRecordCount(issued[1], kRealm, 2), NonceStatus::kStale);
  // The remembered ones still detect replays and accept new counts.
  EXPECT_EQ(nonces.VerifyAndRecordCount(issued[4], kRealm, 1), NonceStatus::kReplayed);
  EXPECT_EQ(nonces.VerifyAndRecordCount(issued[4], kRealm, 2), NonceStatus::kValid);
  // New nonces keep working.
  EXPECT_EQ(nonces.VerifyAndRecordCount(nonces.Issue(kRealm), kRealm, 1), NonceStatus::kValid);
  EXPECT_EQ(nonces.tracked_count(), 3u);
}

TEST(NonceManagerTest, ConcurrentUseCountsEachNcOnce) {
  FakeClock clock;
  NonceManager nonces(Options(), clock);
  std::string nonce = nonces.Issue(kRealm);
  std::atomic<int> accepted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (uint32_t nc = 1; nc <= 500; ++nc) {
        if (nonces.VerifyAndRecordCount(nonce, kRealm, nc) == NonceStatus::kValid) ++accepted;
        nonces.Issue(kRealm);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  // The first thread to reach a count always finds it above the highest recorded
  // so far, and every later one finds it used: each count is accepted exactly once.
  EXPECT_EQ(accepted.load(), 500);
}

TEST(NonceManagerTest, StatusNames) {
  EXPECT_EQ(NonceStatusName(NonceStatus::kValid), "valid");
  EXPECT_EQ(NonceStatusName(NonceStatus::kStale), "stale");
  EXPECT_EQ(NonceStatusName(NonceStatus::kInvalid), "invalid");
  EXPECT_EQ(NonceStatusName(NonceStatus::kReplayed), "replayed");
}

}  // namespace
}  // namespace tandem
