// Issues and checks Digest nonces that need no server-side state to validate:
//   nonce = base64url(timestamp_ms(8, big-endian) || unique(16) ||
//                     HMAC-SHA256(secret, timestamp || unique || realm))
// unique = instance(8) || counter(8): `instance` is drawn at random once per
// NonceManager and the counter increases with each nonce, so nonces never repeat
// (nor collide between servers sharing the secret) without asking the CSPRNG for
// every challenge. Nonces need not be unpredictable, only unique and unforgeable:
// the HMAC makes them unforgeable.
// A nonce is valid for `lifetime` after issue, then stale (authentic but
// expired: the client should retry with a fresh nonce without re-asking the user).
// Replay protection: for each live nonce in use, the highest nonce-count (nc)
// accepted so far is remembered and nc values not above it are refused. The
// table is bounded: expired entries are evicted, and when it is full the oldest
// entry is dropped and every nonce issued no later than it is from then on
// treated as stale (forcing a fresh challenge rather than allowing a replay).
//
// Servers that share the secret accept each other's nonces (nc tracking stays
// per server).
//
// Thread-safety: all methods are safe to call concurrently (one internal mutex).
// Ownership: borrows the Clock, which must outlive the NonceManager.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <array>
#include <atomic>
#include <functional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <openssl/types.h>

#include "common/clock.h"

namespace tandem {

struct NonceManagerOptions {
  // HMAC key. Empty: 32 random bytes drawn at construction (nonces then do not
  // survive a restart nor validate on other servers).
  std::string secret;
  std::chrono::seconds lifetime{300};
  // A nonce stamped further than this in the future is invalid.
  std::chrono::seconds max_clock_skew{5};
  // Most nonces whose nonce-count is remembered at once.
  size_t max_tracked_nonces = 100000;
};

enum class NonceStatus {
  kValid,     // authentic, not expired (and, for VerifyAndRecordCount, nc is new)
  kStale,     // authentic but expired (or forgotten): challenge again with stale=true
  kInvalid,   // not a nonce of ours (garbage, tampered, other secret or realm)
  kReplayed,  // authentic and live, but nc not above the highest already accepted
};

std::string_view NonceStatusName(NonceStatus status);

class NonceManager {
 public:
  NonceManager(NonceManagerOptions options, const Clock& clock);

  NonceManager(const NonceManager&) = delete;
  NonceManager& operator=(const NonceManager&) = delete;

  // A fresh nonce for `realm` (75 characters of [A-Za-z0-9_-]).
  std::string Issue(std::string_view realm);

  // What Verify learnt of an authentic nonce, for RecordCount.
  struct Verified {
    int64_t timestamp_ms = 0;
    std::array<char, 24> key{};  // timestamp || unique: identifies the nonce
  };

  // Authenticity and age only; changes nothing. Never returns kReplayed. When
  // `verified` is given and the nonce is authentic (kValid or kStale), fills it in.
  NonceStatus Verify(std::string_view nonce, std::string_view realm, Verified* verified = nullptr) const;

  // For a nonce Verify found valid: checks its age again and that `nc` is above
  // the highest nonce-count accepted for it, and records `nc`. Call only once the
  // response has been checked, so that forged requests cannot burn counts.
  NonceStatus RecordCount(const Verified& verified, uint32_t nc);

  // Verify, then, if valid, checks that `nc` is above the highest nonce-count
  // accepted for this nonce and records it. Call only once the response has been
  // checked, so that forged requests cannot burn counts.
  NonceStatus VerifyAndRecordCount(std::string_view nonce, std::string_view realm, uint32_t nc);

  // How many nonces currently have a remembered nonce-count.
  size_t tracked_count() const;

 private:
  using TimestampMs = int64_t;
  using NonceKey = std::array<char, 24>;
  struct NonceKeyHash {
    size_t operator()(const NonceKey& key) const {
      return std::hash<std::string_view>{}(std::string_view(key.data(), key.size()));
    }
  };
  using AgeEntry = std::pair<TimestampMs, NonceKey>;

  // Decodes and authenticates; on success fills in `verified`.
  bool Authenticate(std::string_view nonce, std::string_view realm, Verified* verified) const;
  NonceStatus AgeStatus(TimestampMs timestamp, TimestampMs now) const;
  TimestampMs NowMs() const;
  // HMAC-SHA256(secret, stamp_and_unique || realm) into `out` (32 bytes).
  void Mac(std::string_view stamp_and_unique, std::string_view realm, unsigned char* out) const;
  void EvictLocked(TimestampMs now);

  struct MacContextFree {
    void operator()(EVP_MAC_CTX* ctx) const;
  };

  const NonceManagerOptions options_;
  const Clock& clock_;
  std::string secret_;
  const uint64_t instance_;  // random, drawn once: the first half of each nonce's unique part
  std::atomic<uint64_t> next_counter_{0};
  // HMAC-SHA256 keyed with secret_ once and re-initialised for each MAC with the
  // same key (a third of the cost of duplicating a keyed context, which itself is
  // several times cheaper than fetching and keying per call as one-shot HMAC() does).
  mutable std::mutex mac_mu_;
  std::unique_ptr<EVP_MAC_CTX, MacContextFree> mac_;  // guarded by mac_mu_

  mutable std::mutex mu_;
  // key (timestamp || random) -> highest nonce-count accepted.
  std::unordered_map<NonceKey, uint32_t, NonceKeyHash> highest_nc_;
  // (timestamp, key) of every entry of highest_nc_, oldest on top (a heap: no
  // allocation per entry, unlike a tree of strings).
  std::priority_queue<AgeEntry, std::vector<AgeEntry>, std::greater<>> by_age_;
  // Nonces stamped at or before this and not in the table are treated as stale.
  TimestampMs forgotten_up_to_ = INT64_MIN;
};

}  // namespace tandem
