// Slows down password guessing: counts authentication failures per source IP
// and per user; once either reaches its limit within a window, that source or
// user is blocked for a while. A success resets the user's count (not the
// source's, so one valid account cannot be used to keep guessing others).
//
// Memory is bounded: each table (sources, users) holds at most `max_entries`;
// idle entries are dropped as they age out and, when a table is full, the least
// recently failed entry is evicted.
//
// Thread-safety: all methods are safe to call concurrently (one internal mutex).
// Ownership: borrows the Clock, which must outlive the AuthThrottle.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/clock.h"

namespace tandem {

struct AuthThrottleOptions {
  int max_failures_per_user = 5;    // failures within `window` that block a user
  int max_failures_per_source = 5;  // failures within `window` that block a source IP
  std::chrono::seconds window{60};
  std::chrono::seconds block{30};
  size_t max_entries = 100000;  // per table
};

struct AuthThrottleCounters {
  uint64_t failures = 0;   // RecordFailure calls
  uint64_t blocks = 0;     // times a source or user became blocked
  uint64_t throttled = 0;  // IsThrottled calls that answered "blocked"
  uint64_t evictions = 0;  // live entries dropped because a table was full
};

class AuthThrottle {
 public:
  AuthThrottle(AuthThrottleOptions options, const Clock& clock);

  AuthThrottle(const AuthThrottle&) = delete;
  AuthThrottle& operator=(const AuthThrottle&) = delete;

  // If `source` or `user` is blocked, how long until both are free again
  // (whole seconds, at least 1: the value for Retry-After). An empty source or
  // user is not checked.
  std::optional<std::chrono::seconds> IsThrottled(std::string_view source, std::string_view user);

  // Counts one failure against both (empty ones are skipped).
  void RecordFailure(std::string_view source, std::string_view user);

  // Forgets the user's failures (and lifts no block: a blocked user cannot
  // succeed anyway, since callers check IsThrottled first).
  void RecordSuccess(std::string_view source, std::string_view user);

  AuthThrottleCounters counters() const;

  // Entries currently held (sources + users). For tests and metrics.
  size_t size() const;

 private:
  using TimePoint = std::chrono::system_clock::time_point;

  struct Entry {
    std::string key;
    std::deque<TimePoint> failures;  // within the window, oldest first; at most the limit
    TimePoint blocked_until;         // epoch when never blocked
    TimePoint last_failure;
  };

  // One LRU table: most recently failed at the back.
  struct Table {
    std::list<Entry> lru;
    std::unordered_map<std::string_view, std::list<Entry>::iterator> index;  // views into lru keys
  };

  void RecordFailureLocked(Table& table, std::string_view key, int limit, TimePoint now);
  std::optional<TimePoint> BlockedUntilLocked(const Table& table, std::string_view key,
                                              TimePoint now) const;
  void DropIdleLocked(Table& table, TimePoint now);
  bool IsIdle(const Entry& entry, TimePoint now) const;

  const AuthThrottleOptions options_;
  const Clock& clock_;

  mutable std::mutex mu_;
  Table sources_;
  Table users_;
  AuthThrottleCounters counters_;
};

}  // namespace tandem
