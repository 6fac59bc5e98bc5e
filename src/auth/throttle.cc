#include "auth/throttle.h"

#include <algorithm>

namespace tandem {

AuthThrottle::AuthThrottle(AuthThrottleOptions options, const Clock& clock)
    : options_(options), clock_(clock) {}

bool AuthThrottle::IsIdle(const Entry& entry, TimePoint now) const {
  return entry.blocked_until <= now && now - entry.last_failure > options_.window;
}

void AuthThrottle::DropIdleLocked(Table& table, TimePoint now) {
  while (!table.lru.empty() && IsIdle(table.lru.front(), now)) {
    table.index.erase(table.lru.front().key);
    table.lru.pop_front();
  }
}

void AuthThrottle::RecordFailureLocked(Table& table, std::string_view key, int limit,
                                       TimePoint now) {
  if (key.empty()) return;
  DropIdleLocked(table, now);
  auto found = table.index.find(key);
  std::list<Entry>::iterator it;
  if (found != table.index.end()) {
    it = found->second;
    table.lru.splice(table.lru.end(), table.lru, it);  // most recent at the back
  } else {
    const size_t cap = std::max<size_t>(options_.max_entries, 1);
    while (table.lru.size() >= cap) {
      table.index.erase(table.lru.front().key);
      table.lru.pop_front();
      ++counters_.evictions;
    }
    table.lru.push_back(Entry{std::string(key), {}, {}, {}});
    it = std::prev(table.lru.end());
    table.index.emplace(it->key, it);
  }
  Entry& entry = *it;
  entry.last_failure = now;
  if (entry.blocked_until > now) return;  // already blocked; the block is not extended
  while (!entry.failures.empty() && now - entry.failures.front() >= options_.window) {
    entry.failures.pop_front();
  }
  entry.failures.push_back(now);
  if (static_cast<int>(entry.failures.size()) >= std::max(limit, 1)) {
    entry.blocked_until = now + options_.block;
    entry.failures.clear();
    ++counters_.blocks;
  }
}

std::optional<AuthThrottle::TimePoint> AuthThrottle::BlockedUntilLocked(const Table& table,
                                                                        std::string_view key,
                                                                        TimePoint now) const {
  if (key.empty()) return std::nullopt;
  auto found = table.index.find(key);
  if (found == table.index.end()) return std::nullopt;
  TimePoint until = found->second->blocked_until;
  if (until <= now) return std::nullopt;
  return until;
}

std::optional<std::chrono::seconds> AuthThrottle::IsThrottled(std::string_view source,
                                                              std::string_view user) {
  const TimePoint now = clock_.Now();
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<TimePoint> by_source = BlockedUntilLocked(sources_, source, now);
  std::optional<TimePoint> by_user = BlockedUntilLocked(users_, user, now);
  if (!by_source && !by_user) return std::nullopt;
  TimePoint until = std::max(by_source.value_or(now), by_user.value_or(now));
  auto remaining = std::chrono::ceil<std::chrono::seconds>(until - now);
  ++counters_.throttled;
  return std::max(remaining, std::chrono::seconds(1));
}

void AuthThrottle::RecordFailure(std::string_view source, std::string_view user) {
  const TimePoint now = clock_.Now();
  std::lock_guard<std::mutex> lock(mu_);
  ++counters_.failures;
  RecordFailureLocked(sources_, source, options_.max_failures_per_source, now);
  RecordFailureLocked(users_, user, options_.max_failures_per_user, now);
}

void AuthThrottle::RecordSuccess(std::string_view /*source*/, std::string_view user) {
  if (user.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto found = users_.index.find(user);
  if (found == users_.index.end()) return;
  found->second->failures.clear();
  if (found->second->blocked_until <= clock_.Now()) {
    auto entry = found->second;
    users_.index.erase(found);  // before the list node its key views
    users_.lru.erase(entry);
  }
}

AuthThrottleCounters AuthThrottle::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

size_t AuthThrottle::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sources_.lru.size() + users_.lru.size();
}

}  // namespace tandem
