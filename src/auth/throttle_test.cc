#include "auth/throttle.h"

#include <gtest/gtest.h>

#include <string>

namespace tandem {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(AuthThrottleTest, EngagesAfterLimitAndReleasesAfterBlock) {
  FakeClock clock;
  AuthThrottle throttle(AuthThrottleOptions{}, clock);  // 5 failures / 60 s -> 30 s block
  for (int i = 0; i < 4; ++i) {
    throttle.RecordFailure("10.0.0.1", "alice");
    EXPECT_EQ(throttle.IsThrottled("10.0.0.1", "alice"), std::nullopt) << i;
    clock.Advance(seconds(1));
  }
  throttle.RecordFailure("10.0.0.1", "alice");
  EXPECT_EQ(throttle.IsThrottled("10.0.0.1", "alice"), seconds(30));
  EXPECT_EQ(throttle.IsThrottled("10.0.0.1", ""), seconds(30));       // the source is blocked
  EXPECT_EQ(throttle.IsThrottled("10.0.0.2", "alice"), seconds(30));  // and so is the user
  EXPECT_EQ(throttle.IsThrottled("10.0.0.2", "bob"), std::nullopt);
  clock.Advance(milliseconds(10500));
  EXPECT_EQ(throttle.IsThrottled("10.0.0.1", "alice"), seconds(20));  // rounded up
  clock.Advance(milliseconds(19499));
  EXPECT_EQ(throttle.IsThrottled("10.0.0.1", "alice"), seconds(1));
  clock.Advance(milliseconds(1));
  EXPECT_EQ(throttle.IsThrottled("10.0.0.1", "alice"), std::nullopt);

  AuthThrottleCounters counters = throttle.counters();
  EXPECT_EQ(counters.failures, 5u);
  EXPECT_EQ(counters.blocks, 2u);  // the source and the user
  EXPECT_EQ(counters.throttled, 5u);
}

TEST(AuthThrottleTest, FailuresOutsideTheWindowDoNotCount) {
  FakeClock clock;
  AuthThrottle throttle(AuthThrottleOptions{}, clock);
  for (int i = 0; i < 20; ++i) {
    throttle.RecordFailure("10.0.0.1", "alice");
    clock.Advance(seconds(15));  // 4 per minute: never 5 within 60 s
    EXPECT_EQ(throttle.IsThrottled("10.0.0.1", "alice"), std::nullopt) << i;
  }
}

TEST(AuthThrottleTest, SlidingWindow) {
  FakeClock clock;
  AuthThrottle throttle(AuthThrottleOptions{}, clock);
  throttle.RecordFailure("s", "u");  // t=0
  clock.Advance(seconds(50));
  for (int i = 0; i < 3; ++i) throttle.RecordFailure("s", "u");  // t=50: 4 in window
  clock.Advance(seconds(11));        // t=61: the first one left the window
  throttle.RecordFailure("s", "u");  // 4 in window
  EXPECT_EQ(throttle.IsThrottled("s", "u"), std::nullopt);
  throttle.RecordFailure("s", "u");  // 5 in window
  EXPECT_EQ(throttle.IsThrottled("s", "u"), seconds(30));
}

TEST(AuthThrottleTest, SuccessResetsTheUserButNotTheSource) {
  FakeClock clock;
  AuthThrottle throttle(AuthThrottleOptions{}, clock);
  for (int i = 0; i < 4; ++i) throttle.RecordFailure("10.0.0.1", "alice");
  throttle.RecordSuccess("10.0.0.1", "alice");
  throttle.RecordFailure("10.0.0.2", "alice");  // the user's count restarted: 1
  EXPECT_EQ(throttle.IsThrottled("", "alice"), std::nullopt);
  throttle.RecordFailure("10.0.0.1", "carol");  // the source's count went on: 5
  EXPECT_EQ(throttle.IsThrottled("10.0.0.1", ""), seconds(30));
  EXPECT_EQ(throttle.IsThrottled("", "carol"), std::nullopt);
}

TEST(AuthThrottleTest, SuccessDoesNotLiftABlock) {
  FakeClock clock;
  AuthThrottle throttle(AuthThrottleOptions{}, clock);
  for (int i = 0; i < 5; ++i) throttle.RecordFailure("", "alice");
  throttle.RecordSuccess("", "alice");
  EXPECT_EQ(throttle.IsThrottled("", "alice"), seconds(30));
}

TEST(AuthThrottleTest, BlockIsNotExtendedByFailuresWhileBlocked) {
  FakeClock clock;
  AuthThrottle throttle(AuthThrottleOptions{}, clock);
  for (int i = 0; i < 5; ++i) throttle.RecordFailure("s", "");
  clock.Advance(seconds(10));
  throttle.RecordFailure("s", "");
  EXPECT_EQ(throttle.IsThrottled("s", ""), seconds(20));
}

TEST(AuthThrottleTest, SeparateLimitsForSourcesAndUsers) {
  FakeClock clock;
  AuthThrottleOptions options;
  options.max_failures_per_source = 10;
  options.max_failures_per_user = 2;
  options.block = seconds(5);
  AuthThrottle throttle(options, clock);
  throttle.RecordFailure("nat", "a");
  throttle.RecordFailure("nat", "a");
  EXPECT_EQ(throttle.IsThrottled("", "a"), seconds(5));
  EXPECT_EQ(throttle.IsThrottled("nat", ""), std::nullopt);
  EXPECT_EQ(throttle.IsThrottled("nat", "b"), std::nullopt);
}

TEST(AuthThrottleTest, MemoryIsBounded) {
  FakeClock clock;
  AuthThrottleOptions options;
  options.max_entries = 100;
  AuthThrottle throttle(options, clock);
  for (int i = 0; i < 1000; ++i) {
    throttle.RecordFailure("10.0." + std::to_string(i), "user" + std::to_string(i));
    EXPECT_LE(throttle.size(), 200u);
  }
  EXPECT_EQ(throttle.counters().evictions, 1800u);
  // The most recent entries are still there.
  for (int i = 0; i < 4; ++i) throttle.RecordFailure("10.0.999", "");
  EXPECT_EQ(throttle.IsThrottled("10.0.999", ""), seconds(30));
}

TEST(AuthThrottleTest, IdleEntriesAgeOut) {
  FakeClock clock;
  AuthThrottle throttle(AuthThrottleOptions{}, clock);
  for (int i = 0; i < 50; ++i) throttle.RecordFailure("10.0." + std::to_string(i), "");
  EXPECT_EQ(throttle.size(), 50u);
  clock.Advance(seconds(61));
  throttle.RecordFailure("10.1.0.0", "");
  EXPECT_EQ(throttle.size(), 1u);
  EXPECT_EQ(throttle.counters().evictions, 0u);
}

TEST(AuthThrottleTest, EmptyKeysAreIgnored) {
  FakeClock clock;
  AuthThrottle throttle(AuthThrottleOptions{}, clock);
  for (int i = 0; i < 10; ++i) throttle.RecordFailure("", "");
  EXPECT_EQ(throttle.IsThrottled("", ""), std::nullopt);
  EXPECT_EQ(throttle.size(), 0u);
  EXPECT_EQ(throttle.counters().failures, 10u);
}

}  // namespace
}  // namespace tandem
