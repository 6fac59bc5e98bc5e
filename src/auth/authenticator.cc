#include "auth/authenticator.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <utility>

namespace tandem {
namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, [](char x, char y) {
    auto lower = [](char c) {
      return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    };
    return lower(x) == lower(y);
  });
}

bool IsBlank(std::string_view s) {
  return std::ranges::all_of(
      s, [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

// "alice@example.com" -> "alice" when the domain is the realm or `domain`.
std::string_view CanonicalUser(std::string_view username, std::string_view realm,
                               std::string_view domain) {
  size_t at = username.rfind('@');
  if (at == std::string_view::npos) return username;
  std::string_view host = username.substr(at + 1);
  if (EqualsIgnoreCase(host, realm) || (!domain.empty() && EqualsIgnoreCase(host, domain))) {
    return username.substr(0, at);
  }
  return username;
}

const std::string& StoredFor(const StoredHa1& stored, DigestAlgorithm algorithm) {
  return algorithm == DigestAlgorithm::kSha256 ? stored.ha1_sha256 : stored.ha1_md5;
}

// Nonce-count recorded for an RFC 2069 response: uses the nonce up.
constexpr uint32_t kNoQopCount = std::numeric_limits<uint32_t>::max();

// Stands in for a missing HA1 so that unknown users cost the same hashing.
constexpr std::string_view kDummyHa1 =
    "0000000000000000000000000000000000000000000000000000000000000000";

}  // namespace

std::string_view AuthOutcomeName(AuthOutcome outcome) {
  switch (outcome) {
    case AuthOutcome::kAccept:
      return "accept";
    case AuthOutcome::kChallenge:
      return "challenge";
    case AuthOutcome::kStaleChallenge:
      return "stale-challenge";
    case AuthOutcome::kBadRequest:
      return "bad-request";
    case AuthOutcome::kForbidden:
      return "forbidden";
    case AuthOutcome::kThrottled:
      return "throttled";
  }
  return "forbidden";
}

int AuthDecision::status_code() const {
  switch (outcome) {
    case AuthOutcome::kAccept:
      return 200;
    case AuthOutcome::kChallenge:
    case AuthOutcome::kStaleChallenge:
      return 401;
    case AuthOutcome::kBadRequest:
      return 400;
    case AuthOutcome::kForbidden:
      return 403;
    case AuthOutcome::kThrottled:
      return 503;
  }
  return 403;
}

DigestAuthenticator::DigestAuthenticator(DigestAuthenticatorOptions options, const Clock& clock)
    : options_(std::move(options)),
      nonces_(options_.nonce, clock),
      throttle_(options_.throttle, clock) {}

AuthDecision DigestAuthenticator::MakeChallenge(std::string_view realm, bool stale,
                                                const std::vector<DigestAlgorithm>& algorithms,
                                                std::string reason) {
  AuthDecision decision;
  decision.outcome = stale ? AuthOutcome::kStaleChallenge : AuthOutcome::kChallenge;
  decision.reason = std::move(reason);
  std::string nonce = nonces_.Issue(realm);
  for (DigestAlgorithm algorithm : algorithms) {
    DigestChallenge challenge;
    challenge.realm = std::string(realm);
    challenge.nonce = nonce;
    challenge.algorithm = algorithm;
    challenge.opaque = options_.opaque;
    challenge.stale = stale;
    decision.challenges.push_back(BuildChallenge(challenge));
  }
  ++(stale ? stale_ : challenged_);
  return decision;
}

AuthDecision DigestAuthenticator::Challenge(std::string_view realm, bool stale) {
  return MakeChallenge(realm, stale, options_.algorithms, stale ? "stale nonce" : "no credentials");
}

AuthDecision DigestAuthenticator::Forbid(const AuthRequest& request, std::string reason) {
  throttle_.RecordFailure(request.source_ip, request.expected_user);
  ++forbidden_;
  AuthDecision decision;
  decision.outcome = AuthOutcome::kForbidden;
  decision.reason = std::move(reason);
  return decision;
}

AuthDecision DigestAuthenticator::BadRequest(const AuthRequest& request, std::string reason) {
  // Only the source is charged: nothing proves which user the sender aims at.
  throttle_.RecordFailure(request.source_ip, {});
  ++bad_request_;
  AuthDecision decision;
  decision.outcome = AuthOutcome::kBadRequest;
  decision.reason = std::move(reason);
  return decision;
}

AuthDecision DigestAuthenticator::Authenticate(const AuthRequest& request,
                                               const Ha1Lookup& lookup) {
  if (std::optional<std::chrono::seconds> retry =
          throttle_.IsThrottled(request.source_ip, request.expected_user)) {
    ++throttled_;
    AuthDecision decision;
    decision.outcome = AuthOutcome::kThrottled;
    decision.retry_after = *retry;
    decision.reason = "too many authentication failures";
    return decision;
  }
  if (!request.authorization || IsBlank(*request.authorization)) {
    return Challenge(request.realm);
  }
  if (!HasDigestScheme(*request.authorization)) {
    return MakeChallenge(request.realm, false, options_.algorithms,
                         "credentials not of the Digest scheme");
  }
  Result<DigestCredentials> parsed = ParseDigestCredentials(*request.authorization);
  if (!parsed) return BadRequest(request, "malformed credentials: " + parsed.error().message);
  const DigestCredentials& creds = *parsed;

  // Credentials for another realm are not for us (RFC 3261 §22.3).
  if (creds.realm != request.realm) {
    return MakeChallenge(request.realm, false, options_.algorithms,
                         fmt::format("credentials for realm \"{}\"", creds.realm));
  }
  std::optional<DigestAlgorithm> algorithm = ParseDigestAlgorithm(creds.algorithm);
  if (!algorithm ||
      std::ranges::find(options_.algorithms, *algorithm) == options_.algorithms.end()) {
    return MakeChallenge(request.realm, false, options_.algorithms,
                         fmt::format("unsupported algorithm \"{}\"", creds.algorithm));
  }
  if (creds.userhash) return BadRequest(request, "userhash is not supported");
  if (creds.qop.empty() ? !options_.allow_rfc2069 : creds.qop != "auth") {
    return BadRequest(request, fmt::format("unsupported qop \"{}\"", creds.qop));
  }
  if (!DigestUriMatches(creds.uri, request.request_uri)) {
    return BadRequest(request, fmt::format("digest uri \"{}\" is not the Request-URI \"{}\"",
                                           creds.uri, request.request_uri));
  }
  std::string_view user = CanonicalUser(creds.username, request.realm, request.domain);
  if (request.expected_user.empty() || user != request.expected_user) {
    return Forbid(request, fmt::format("username \"{}\" does not match the user \"{}\"",
                                       creds.username, request.expected_user));
  }
  NonceManager::Verified verified_nonce;
  const NonceStatus nonce_status = nonces_.Verify(creds.nonce, request.realm, &verified_nonce);
  if (nonce_status == NonceStatus::kInvalid) {
    return MakeChallenge(request.realm, false, options_.algorithms, "nonce not issued by us");
  }

  std::optional<StoredHa1> stored = lookup(Ha1LookupKey{user, creds.username, request.realm});
  std::string_view ha1 = kDummyHa1;
  bool known = false;
  if (stored) {
    const std::string& for_algorithm = StoredFor(*stored, *algorithm);
    if (!for_algorithm.empty()) {
      ha1 = for_algorithm;
      known = true;
    } else {
      // Provisioned, but not for this algorithm: offer only those we can check.
      std::vector<DigestAlgorithm> usable;
      for (DigestAlgorithm offered : options_.algorithms) {
        if (!StoredFor(*stored, offered).empty()) usable.push_back(offered);
      }
      if (!usable.empty()) {
        return MakeChallenge(
            request.realm, false, usable,
            fmt::format("no {} secret stored for the user", DigestAlgorithmName(*algorithm)));
      }
    }
  }
  Result<std::string> expected = ComputeResponse(ha1, creds.nonce, creds.nc, creds.cnonce,
                                                 creds.qop, request.method, creds.uri, *algorithm);
  if (!expected) {
    ++forbidden_;
    AuthDecision decision;
    decision.outcome = AuthOutcome::kForbidden;
    decision.reason = expected.error().message;
    return decision;
  }
  if (!known) return Forbid(request, "unknown user");
  if (!DigestsEqual(*expected, creds.response)) return Forbid(request, "wrong response (password)");

  // The response is right: from here on the client knows the password.
  if (nonce_status == NonceStatus::kStale) {
    return MakeChallenge(request.realm, true, options_.algorithms, "nonce expired");
  }
  const uint32_t count = creds.qop.empty() ? kNoQopCount : creds.nonce_count;
  switch (nonces_.RecordCount(verified_nonce, count)) {
    case NonceStatus::kValid:
      break;
    case NonceStatus::kReplayed:
      ++replayed_;
      return MakeChallenge(request.realm, true, options_.algorithms,
                           fmt::format("nonce count {} replayed", creds.nc));
    case NonceStatus::kStale:
      return MakeChallenge(request.realm, true, options_.algorithms, "nonce expired");
    case NonceStatus::kInvalid:
      return MakeChallenge(request.realm, false, options_.algorithms, "nonce not issued by us");
  }
  throttle_.RecordSuccess(request.source_ip, request.expected_user);
  ++accepted_;
  AuthDecision decision;
  decision.outcome = AuthOutcome::kAccept;
  decision.user = std::string(user);
  decision.reason = "credentials valid";
  return decision;
}

AuthCounters DigestAuthenticator::counters() const {
  AuthCounters out;
  out.accepted = accepted_.load(std::memory_order_relaxed);
  out.challenged = challenged_.load(std::memory_order_relaxed);
  out.stale = stale_.load(std::memory_order_relaxed);
  out.replayed = replayed_.load(std::memory_order_relaxed);
  out.bad_request = bad_request_.load(std::memory_order_relaxed);
  out.forbidden = forbidden_.load(std::memory_order_relaxed);
  out.throttled = throttled_.load(std::memory_order_relaxed);
  return out;
}

}  // namespace tandem
