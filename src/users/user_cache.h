// The provisioned users the SIP side looks up, cached in front of the pool's store.
// Every REGISTER (and every request routed between pools) looks its user up, which
// costs a statement under the store's lock (SQLite) or a round trip (PostgreSQL),
// while users rarely change.
//
// Staying current: a background thread polls the store every `poll_interval`. The
// users named by new "user" change-log records (any server of the pool appends
// them) are dropped; everything is dropped when a partner's users were imported
// (Backup Service: no local change-log record) or the store cannot be read, and
// nothing is served from the cache until a poll succeeds again. So a change made
// anywhere is seen within about one interval. Only users found are cached: a user
// just added is found at once.
//
// Thread-safety: thread-safe. Borrows the store, which must outlive it (Stop first).
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/error.h"
#include "store/store.h"

namespace tandem {

struct UserCacheOptions {
  std::chrono::milliseconds poll_interval{200};
  // Users per half: when the newer half is full it becomes the older one and the
  // previous older one is dropped, so up to twice this many are held (~450 bytes each).
  size_t capacity = 8192;
  int max_changes_per_poll = 1000;  // more new records than this drop everything
};

class UserCache {
 public:
  explicit UserCache(Store& store, UserCacheOptions options = {});
  ~UserCache();
  UserCache(const UserCache&) = delete;
  UserCache& operator=(const UserCache&) = delete;

  // Polls the store once, then every poll_interval on a background thread.
  void Start();
  void Stop();

  // Store::FindUser, answered from the cache when it may be.
  Result<std::optional<UserRecord>> Find(const std::string& user, const std::string& domain);
  // Find as the SIP services take it. The cache must outlive the function.
  UserLookup Lookup() {
    return [this](const std::string& user, const std::string& domain) { return Find(user, domain); };
  }

  // One poll of the store, now (what the background thread does every interval).
  Status Refresh();

  uint64_t hits() const;
  size_t size() const;

 private:
  // Entries live in pool_, fed with pages of their own: cached users outlive the
  // requests that looked them up, and on the general heap they would pin the pages
  // of a whole burst of transactions (common/page_resource.h).
  struct Key {
    std::pmr::string user;  // also the record's username and domain (FindUser matches them exactly)
    std::pmr::string domain;
  };
  struct KeyView {
    std::string_view user;
    std::string_view domain;
  };
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(const KeyView& k) const {
      return std::hash<std::string_view>{}(k.user) * 31 + std::hash<std::string_view>{}(k.domain);
    }
    size_t operator()(const Key& k) const { return (*this)(KeyView{k.user, k.domain}); }
  };
  struct KeyEqual {
    using is_transparent = void;
    static KeyView View(const Key& k) { return {k.user, k.domain}; }
    static KeyView View(const KeyView& k) { return k; }
    bool operator()(const auto& a, const auto& b) const {
      return View(a).user == View(b).user && View(a).domain == View(b).domain;
    }
  };
  // The rest of a record in one allocation: uri, home pool and the four HA1s back
  // to back, field i ending at ends[i].
  struct Entry {
    std::pmr::string text;
    std::array<uint16_t, 6> ends{};
    int64_t created_at_ms = 0;
  };
  using Map = std::pmr::unordered_map<Key, Entry, KeyHash, KeyEqual>;
  // What a poll compares: the newest "user" change and the users imported from each partner.
  struct ImportMark {
    std::string source_pool;
    int64_t applied_seq = 0;
    int64_t snapshot_seq = 0;
    bool operator==(const ImportMark&) const = default;
  };

  // Both bump the epoch. mu_ held.
  void DropAllLocked();
  void DropLocked(std::string_view uri);  // one user, by URI
  void InsertLocked(const UserRecord& user);  // mu_ held
  static UserRecord RecordOf(const Key& key, const Entry& entry);
  void Loop(bool failing);
  static void LogPoll(const Status& polled, bool was_failing);

  Store& store_;
  const UserCacheOptions options_;

  mutable std::mutex mu_;
  std::unique_ptr<std::pmr::memory_resource> pages_;
  std::pmr::unsynchronized_pool_resource pool_;  // guarded by mu_
  Map newer_;                                    // guarded by mu_
  Map older_;                                    // guarded by mu_
  // Bumped by every drop: a lookup that read the store before a drop must not
  // insert what it read after it.
  uint64_t epoch_ = 0;               // guarded by mu_
  bool current_ = false;             // guarded by mu_: the last poll succeeded
  int64_t seen_seq_ = 0;             // guarded by mu_: change-log records up to here are applied
  std::vector<ImportMark> imports_;  // guarded by mu_
  uint64_t hits_ = 0;                // guarded by mu_
  bool stopping_ = false;            // guarded by mu_
  std::condition_variable wake_;

  std::mutex refresh_mu_;  // one poll at a time (the thread and callers of Refresh)
  std::thread thread_;
};

}  // namespace tandem
