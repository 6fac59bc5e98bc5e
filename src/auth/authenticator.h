// Decides whether a SIP request carries valid Digest credentials, for the
// registrar (401 / WWW-Authenticate) and equally for a proxy (407 /
// Proxy-Authenticate; the challenge values are identical). Ties together digest
// parsing and checking (digest.h), self-validating expiring nonces with nc replay
// protection (nonce.h) and failure throttling (throttle.h).
//
// Outcomes (AuthDecision::status_code()):
//   kAccept          200  credentials valid; `user` is the authenticated user
//   kChallenge       401  no (usable) credentials: send `challenges`, one
//                         WWW-Authenticate header each, in order (SHA-256 first,
//                         then MD5, per RFC 8760)
//   kStaleChallenge  401  correct response but expired (or replayed) nonce: same,
//                         with stale=true so the client retries without the user
//   kBadRequest      400  malformed credentials, or ones that break the protocol
//                         (wrong digest-uri, unsupported qop)
//   kForbidden       403  wrong password, unknown user (answered alike, so user
//                         names cannot be probed), or username not the To user
//   kThrottled       503  too many failures from this source or for this user;
//                         send Retry-After: retry_after
//
// Thread-safety: Authenticate and the accessors are safe to call concurrently;
// the lookup is called without any lock held. Ownership: owns its NonceManager
// and AuthThrottle; borrows the Clock, which must outlive it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "auth/digest.h"
#include "auth/nonce.h"
#include "auth/throttle.h"

namespace tandem {

// A user's stored secrets: HA1 = H(digest_username ":" realm ":" password) in hex,
// per algorithm. Empty means "not provisioned for this algorithm".
struct StoredHa1 {
  std::string ha1_md5;
  std::string ha1_sha256;
};

struct Ha1LookupKey {
  std::string_view user;             // canonical user (== AuthRequest::expected_user)
  std::string_view digest_username;  // as sent ("alice" or "alice@example.com"); the
                                     // returned HA1 must be computed over this
  std::string_view realm;
};

// nullopt: no such user.
using Ha1Lookup = std::function<std::optional<StoredHa1>(const Ha1LookupKey& key)>;

struct AuthRequest {
  std::string_view method;                        // e.g. "REGISTER"
  std::string_view request_uri;                   // e.g. "sip:example.com"
  std::optional<std::string_view> authorization;  // Authorization header value, if any
  std::string_view source_ip;                     // for throttling
  std::string_view expected_user;                 // user part of the To AOR (REGISTER) the
                                                  // credentials must belong to; empty never matches
  std::string_view realm;                         // e.g. "example.com"
  // Another domain accepted after '@' in the digest username (the realm always is);
  // e.g. the To AOR host. May be empty.
  std::string_view domain;
};

enum class AuthOutcome {
  kAccept,
  kChallenge,
  kStaleChallenge,
  kBadRequest,
  kForbidden,
  kThrottled
};

std::string_view AuthOutcomeName(AuthOutcome outcome);

struct AuthDecision {
  AuthOutcome outcome = AuthOutcome::kChallenge;
  std::string user;                     // kAccept: the authenticated user
  std::vector<std::string> challenges;  // k*Challenge: WWW-Authenticate values, in order
  std::chrono::seconds retry_after{0};  // kThrottled: the Retry-After value
  std::string reason;                   // why, for logs (never sent to the client)

  // 200, 401, 400, 403 or 503 (see the table above).
  int status_code() const;
};

struct DigestAuthenticatorOptions {
  NonceManagerOptions nonce;
  AuthThrottleOptions throttle;
  // Offered, in this order, one challenge each; others are refused.
  std::vector<DigestAlgorithm> algorithms = {DigestAlgorithm::kSha256, DigestAlgorithm::kMd5};
  std::string opaque;  // sent in challenges when non-empty (not checked on return)
  // Accept RFC 2069 responses (no qop). Such a nonce is then single-use.
  bool allow_rfc2069 = true;
};

struct AuthCounters {
  uint64_t accepted = 0;
  uint64_t challenged = 0;
  uint64_t stale = 0;
  uint64_t replayed = 0;  // part of `stale`: nc not above the last one accepted
  uint64_t bad_request = 0;
  uint64_t forbidden = 0;
  uint64_t throttled = 0;
};

class DigestAuthenticator {
 public:
  explicit DigestAuthenticator(DigestAuthenticatorOptions options,
                               const Clock& clock = SystemClock::Instance());

  DigestAuthenticator(const DigestAuthenticator&) = delete;
  DigestAuthenticator& operator=(const DigestAuthenticator&) = delete;

  AuthDecision Authenticate(const AuthRequest& request, const Ha1Lookup& lookup);

  // A kChallenge (or kStaleChallenge) decision with a fresh nonce, for callers
  // that want to challenge without looking at a request.
  AuthDecision Challenge(std::string_view realm, bool stale = false);

  AuthCounters counters() const;
  AuthThrottleCounters throttle_counters() const { return throttle_.counters(); }

 private:
  AuthDecision MakeChallenge(std::string_view realm, bool stale,
                             const std::vector<DigestAlgorithm>& algorithms, std::string reason);
  AuthDecision Forbid(const AuthRequest& request, std::string reason);
  AuthDecision BadRequest(const AuthRequest& request, std::string reason);

  const DigestAuthenticatorOptions options_;
  NonceManager nonces_;
  AuthThrottle throttle_;

  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> challenged_{0};
  std::atomic<uint64_t> stale_{0};
  std::atomic<uint64_t> replayed_{0};
  std::atomic<uint64_t> bad_request_{0};
  std::atomic<uint64_t> forbidden_{0};
  std::atomic<uint64_t> throttled_{0};
};

}  // namespace tandem
