// Issues and checks Digest nonces that need no server-side state to validate:
//   nonce = base64url(timestamp_ms(8, big-endian) || random(16) ||
//                     HMAC-SHA256(secret, timestamp || random || realm))
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

  // Authenticity and age only; changes nothing. Never returns kReplayed.
  NonceStatus Verify(std::string_view nonce, std::string_view realm) const;

  // Verify, then, if valid, checks that `nc` is above the highest nonce-count
  // accepted for this nonce and records it. Call only once the response has been
  // checked, so that forged requests cannot burn counts.
  NonceStatus VerifyAndRecordCount(std::string_view nonce, std::string_view realm, uint32_t nc);

  // How many nonces currently have a remembered nonce-count.
  size_t tracked_count() const;

 private:
  using TimestampMs = int64_t;
  // timestamp || random: what identifies a nonce.
  using NonceKey = std::array<char, 24>;
  struct NonceKeyHash {
    size_t operator()(const NonceKey& key) const {
      return std::hash<std::string_view>{}(std::string_view(key.data(), key.size()));
    }
  };
  using AgeEntry = std::pair<TimestampMs, NonceKey>;

  // Decodes and authenticates; on success sets the timestamp and the 24-byte
  // key (timestamp || random) identifying the nonce.
  bool Authenticate(std::string_view nonce, std::string_view realm, TimestampMs* timestamp,
                    NonceKey* key) const;
  NonceStatus AgeStatus(TimestampMs timestamp, TimestampMs now) const;
  TimestampMs NowMs() const;
  std::string Mac(std::string_view stamp_and_random, std::string_view realm) const;
  void EvictLocked(TimestampMs now);

  struct MacContextFree {
    void operator()(EVP_MAC_CTX* ctx) const;
  };

  const NonceManagerOptions options_;
  const Clock& clock_;
  std::string secret_;
  // HMAC-SHA256 keyed with secret_ once; each MAC duplicates it (fetching the
  // algorithm and keying per call, as one-shot HMAC() does, costs several times more).
  std::unique_ptr<EVP_MAC_CTX, MacContextFree> mac_template_;

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
