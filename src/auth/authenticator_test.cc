#include "auth/authenticator.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <random>
#include <string>

namespace tandem {
namespace {

using std::chrono::seconds;

constexpr std::string_view kRealm = "example.com";
constexpr std::string_view kRequestUri = "sip:example.com";

// The nonce="..." of a challenge value (nonces never contain quotes).
std::string NonceOf(std::string_view challenge) {
  size_t start = challenge.find("nonce=\"");
  if (start == std::string_view::npos) return "";
  start += 7;
  return std::string(challenge.substr(start, challenge.find('"', start) - start));
}

// What a SIP client (e.g. a phone) puts in its Authorization header.
struct ClientAnswer {
  std::string username = "alice";
  std::string password = "secret";
  std::string realm = std::string(kRealm);
  std::string nonce;
  std::string uri = std::string(kRequestUri);
  std::string method = "REGISTER";
  DigestAlgorithm algorithm = DigestAlgorithm::kSha256;
  std::string algorithm_token = "SHA-256";
  std::string qop = "auth";
  std::string nc = "00000001";
  std::string cnonce = "0a4f113b";

  void Use(DigestAlgorithm alg) {
    algorithm = alg;
    algorithm_token = std::string(DigestAlgorithmName(alg));
  }

  std::string Header() const {
    std::string ha1 = ComputeHa1(username, realm, password, algorithm).value();
    std::string response =
        ComputeResponse(ha1, nonce, nc, cnonce, qop, method, uri, algorithm).value();
    std::string value = fmt::format(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\"", username,
        realm, nonce, uri, response);
    if (!algorithm_token.empty()) value += ", algorithm=" + algorithm_token;
    if (!qop.empty()) value += fmt::format(", qop={}, nc={}, cnonce=\"{}\"", qop, nc, cnonce);
    return value;
  }
};

class AuthenticatorTest : public ::testing::Test {
 protected:
  AuthenticatorTest() { Reset(DigestAuthenticatorOptions{}); }

  void Reset(DigestAuthenticatorOptions options) {
    options.nonce.secret = "pool secret";
    auth_ = std::make_unique<DigestAuthenticator>(std::move(options), clock_);
  }

  // alice: both algorithms, also provisioned as "alice@example.com";
  // bob: MD5 only. Keyed by the digest username, as a store would.
  void SetUp() override {
    for (const char* name : {"alice", "alice@example.com"}) {
      users_[name] =
          StoredHa1{ComputeHa1(name, kRealm, "secret", DigestAlgorithm::kMd5).value(),
                    ComputeHa1(name, kRealm, "secret", DigestAlgorithm::kSha256).value()};
    }
    users_["bob"] =
        StoredHa1{ComputeHa1("bob", kRealm, "hunter2", DigestAlgorithm::kMd5).value(), ""};
  }

  AuthDecision Run(const std::optional<std::string>& authorization,
                   std::string_view expected_user = "alice", std::string_view source = "192.0.2.1",
                   std::string_view method = "REGISTER") {
    AuthRequest request;
    request.method = method;
    request.request_uri = kRequestUri;
    if (authorization) request.authorization = *authorization;
    request.source_ip = source;
    request.expected_user = expected_user;
    request.realm = kRealm;
    request.domain = "sip.example.com";
    return auth_->Authenticate(request, lookup_);
  }

  // A fresh nonce from a challenge, as a client gets it.
  std::string FreshNonce() {
    AuthDecision challenge = Run(std::nullopt);
    EXPECT_EQ(challenge.outcome, AuthOutcome::kChallenge);
    return challenge.challenges.empty() ? "" : NonceOf(challenge.challenges.front());
  }

  FakeClock clock_;
  std::unique_ptr<DigestAuthenticator> auth_;
  std::map<std::string, StoredHa1, std::less<>> users_;
  std::vector<std::string> looked_up_;
  Ha1Lookup lookup_ = [this](const Ha1LookupKey& key) -> std::optional<StoredHa1> {
    EXPECT_EQ(key.realm, kRealm);
    looked_up_.push_back(std::string(key.user) + "|" + std::string(key.digest_username));
    auto it = users_.find(key.digest_username);
    if (it == users_.end()) return std::nullopt;
    return it->second;
  };
};

TEST_F(AuthenticatorTest, NoCredentialsGetsSha256ThenMd5Challenges) {
  AuthDecision decision = Run(std::nullopt);
  EXPECT_EQ(decision.outcome, AuthOutcome::kChallenge);
  EXPECT_EQ(decision.status_code(), 401);
  ASSERT_EQ(decision.challenges.size(), 2u);
  std::string nonce = NonceOf(decision.challenges[0]);
  EXPECT_EQ(nonce.size(), 75u);
  EXPECT_EQ(
      decision.challenges[0],
      fmt::format("Digest realm=\"example.com\", nonce=\"{}\", algorithm=SHA-256, qop=\"auth\"",
                  nonce));
  EXPECT_EQ(decision.challenges[1],
            fmt::format("Digest realm=\"example.com\", nonce=\"{}\", algorithm=MD5, qop=\"auth\"",
                        nonce));
  EXPECT_TRUE(looked_up_.empty());
}

TEST_F(AuthenticatorTest, SipRoundTripSha256) {
  AuthDecision challenge = Run(std::nullopt);
  ClientAnswer answer;
  answer.nonce = NonceOf(challenge.challenges[0]);
  AuthDecision decision = Run(answer.Header());
  EXPECT_EQ(decision.outcome, AuthOutcome::kAccept) << decision.reason;
  EXPECT_EQ(decision.status_code(), 200);
  EXPECT_EQ(decision.user, "alice");
  EXPECT_EQ(looked_up_, std::vector<std::string>{"alice|alice"});
}

TEST_F(AuthenticatorTest, SipRoundTripMd5WithAlgorithmOmitted) {
  ClientAnswer answer;
  answer.nonce = FreshNonce();
  answer.Use(DigestAlgorithm::kMd5);
  answer.algorithm_token = "";  // absent means MD5
  AuthDecision decision = Run(answer.Header());
  EXPECT_EQ(decision.outcome, AuthOutcome::kAccept) << decision.reason;
}

TEST_F(AuthenticatorTest, OpaqueIsSentWhenConfigured) {
  DigestAuthenticatorOptions options;
  options.opaque = "opaque-value";
  Reset(options);
  AuthDecision decision = Run(std::nullopt);
  ASSERT_FALSE(decision.challenges.empty());
  EXPECT_NE(decision.challenges[0].find("opaque=\"opaque-value\""), std::string::npos);
}

struct DecisionCase {
  std::string name;
  std::function<void(ClientAnswer&)> mutate;
  std::string expected_user = "alice";
  AuthOutcome outcome;
};

TEST_F(AuthenticatorTest, DecisionTable) {
  const std::vector<DecisionCase> cases = {
      {"valid", [](ClientAnswer&) {}, "alice", AuthOutcome::kAccept},
      {"wrong password", [](ClientAnswer& a) { a.password = "guess"; }, "alice",
       AuthOutcome::kForbidden},
      {"unknown user", [](ClientAnswer& a) { a.username = "mallory"; }, "mallory",
       AuthOutcome::kForbidden},
      {"username is not the To user", [](ClientAnswer&) {}, "bob", AuthOutcome::kForbidden},
      {"empty expected user", [](ClientAnswer&) {}, "", AuthOutcome::kForbidden},
      {"user@realm", [](ClientAnswer& a) { a.username = "alice@example.com"; }, "alice",
       AuthOutcome::kAccept},
      {"user@REALM, not in the store", [](ClientAnswer& a) { a.username = "alice@EXAMPLE.com"; }, "alice",
       AuthOutcome::kForbidden},
      {"user@other domain", [](ClientAnswer& a) { a.username = "alice@evil.com"; }, "alice",
       AuthOutcome::kForbidden},
      {"case of user", [](ClientAnswer& a) { a.username = "Alice"; }, "alice",
       AuthOutcome::kForbidden},
      {"equivalent uri", [](ClientAnswer& a) { a.uri = "<SIP:Example.com>"; }, "alice",
       AuthOutcome::kAccept},
      {"other uri", [](ClientAnswer& a) { a.uri = "sip:other.com"; }, "alice",
       AuthOutcome::kBadRequest},
      {"other realm", [](ClientAnswer& a) { a.realm = "other.com"; }, "alice",
       AuthOutcome::kChallenge},
      {"forged nonce", [](ClientAnswer& a) { a.nonce = std::string(75, 'A'); }, "alice",
       AuthOutcome::kChallenge},
      {"garbage nonce", [](ClientAnswer& a) { a.nonce = "abc"; }, "alice", AuthOutcome::kChallenge},
      {"sha-256 token lower case", [](ClientAnswer& a) { a.algorithm_token = "sha-256"; }, "alice",
       AuthOutcome::kAccept},
      {"MD5-sess", [](ClientAnswer& a) { a.algorithm_token = "MD5-sess"; }, "alice",
       AuthOutcome::kChallenge},
      {"SHA-512-256", [](ClientAnswer& a) { a.algorithm_token = "SHA-512-256"; }, "alice",
       AuthOutcome::kChallenge},
      {"token/hash mismatch", [](ClientAnswer& a) { a.algorithm_token = "MD5"; }, "alice",
       AuthOutcome::kForbidden},
      {"qop auth-int", [](ClientAnswer& a) { a.qop = "auth-int"; }, "alice",
       AuthOutcome::kBadRequest},
      {"nc zero", [](ClientAnswer& a) { a.nc = "00000000"; }, "alice",
       AuthOutcome::kStaleChallenge},
      {"other method", [](ClientAnswer& a) { a.method = "INVITE"; }, "alice",
       AuthOutcome::kForbidden},
      {"bob md5",
       [](ClientAnswer& a) {
         a.username = "bob";
         a.password = "hunter2";
         a.Use(DigestAlgorithm::kMd5);
       },
       "bob", AuthOutcome::kAccept},
      {"bob sha-256 not stored",
       [](ClientAnswer& a) {
         a.username = "bob";
         a.password = "hunter2";
       },
       "bob", AuthOutcome::kChallenge},
  };
  for (const DecisionCase& c : cases) {
    Reset(DigestAuthenticatorOptions{});  // fresh throttle for each case
    ClientAnswer answer;
    answer.nonce = FreshNonce();
    c.mutate(answer);
    AuthDecision decision = Run(answer.Header(), c.expected_user);
    EXPECT_EQ(decision.outcome, c.outcome)
        << c.name << ": got " << AuthOutcomeName(decision.outcome) << " (" << decision.reason
        << ")";
    if (decision.outcome == AuthOutcome::kAccept) {
      EXPECT_EQ(decision.user, c.expected_user) << c.name;
    } else {
      EXPECT_TRUE(decision.user.empty()) << c.name;
    }
    bool challenges = decision.outcome == AuthOutcome::kChallenge ||
                      decision.outcome == AuthOutcome::kStaleChallenge;
    EXPECT_EQ(!decision.challenges.empty(), challenges) << c.name;
  }
}

TEST_F(AuthenticatorTest, MalformedAndForeignCredentials) {
  struct Case {
    std::string value;
    AuthOutcome outcome;
  };
  const std::vector<Case> cases = {
      {"", AuthOutcome::kChallenge},
      {"   ", AuthOutcome::kChallenge},
      {"Basic YWxpY2U6c2VjcmV0", AuthOutcome::kChallenge},
      {"Digest", AuthOutcome::kBadRequest},
      {"Digest username=\"alice\"", AuthOutcome::kBadRequest},
      {"Digest username=\"alice\", username=\"bob\", realm=\"example.com\", nonce=\"n\", "
       "uri=\"sip:example.com\", response=\"00\"",
       AuthOutcome::kBadRequest},
      {"Digest username=\"alice, realm=\"example.com\"", AuthOutcome::kBadRequest},
      {"Digest username=\"alice\", realm=\"example.com\", nonce=\"n\", uri=\"sip:example.com\", "
       "response=\"00\", userhash=true",
       AuthOutcome::kBadRequest},
  };
  for (const Case& c : cases) {
    AuthDecision decision =
        Run(c.value, "alice", "198.51.100." + std::to_string(&c - cases.data()));
    EXPECT_EQ(decision.outcome, c.outcome) << c.value << " -> " << decision.reason;
  }
  EXPECT_TRUE(looked_up_.empty());
}

TEST_F(AuthenticatorTest, ExpiredNonceWithRightPasswordIsStale) {
  ClientAnswer answer;
  answer.nonce = FreshNonce();
  clock_.Advance(seconds(301));
  AuthDecision decision = Run(answer.Header());
  EXPECT_EQ(decision.outcome, AuthOutcome::kStaleChallenge) << decision.reason;
  EXPECT_EQ(decision.status_code(), 401);
  ASSERT_EQ(decision.challenges.size(), 2u);
  for (const std::string& challenge : decision.challenges) {
    EXPECT_NE(challenge.find(", stale=true"), std::string::npos) << challenge;
  }
  // The client retries with the new nonce, without asking its user.
  answer.nonce = NonceOf(decision.challenges[0]);
  EXPECT_NE(answer.nonce, "");
  EXPECT_EQ(Run(answer.Header()).outcome, AuthOutcome::kAccept);
}

TEST_F(AuthenticatorTest, ExpiredNonceWithWrongPasswordIsForbidden) {
  ClientAnswer answer;
  answer.nonce = FreshNonce();
  answer.password = "guess";
  clock_.Advance(seconds(301));
  EXPECT_EQ(Run(answer.Header()).outcome, AuthOutcome::kForbidden);
}

TEST_F(AuthenticatorTest, ReplayedNonceCountGetsStaleChallenge) {
  ClientAnswer answer;
  answer.nonce = FreshNonce();
  std::string header = answer.Header();
  EXPECT_EQ(Run(header).outcome, AuthOutcome::kAccept);
  AuthDecision replay = Run(header);
  EXPECT_EQ(replay.outcome, AuthOutcome::kStaleChallenge) << replay.reason;
  // The client's next request on the same nonce counts up.
  answer.nc = "00000002";
  answer.cnonce = "another";
  EXPECT_EQ(Run(answer.Header()).outcome, AuthOutcome::kAccept);
  EXPECT_EQ(auth_->counters().replayed, 1u);
}

TEST_F(AuthenticatorTest, Rfc2069ResponseIsSingleUse) {
  ClientAnswer answer;
  answer.nonce = FreshNonce();
  answer.qop = "";
  answer.Use(DigestAlgorithm::kMd5);
  EXPECT_EQ(Run(answer.Header()).outcome, AuthOutcome::kAccept);
  EXPECT_EQ(Run(answer.Header()).outcome, AuthOutcome::kStaleChallenge);

  DigestAuthenticatorOptions options;
  options.allow_rfc2069 = false;
  Reset(options);
  answer.nonce = FreshNonce();
  EXPECT_EQ(Run(answer.Header()).outcome, AuthOutcome::kBadRequest);
}

TEST_F(AuthenticatorTest, Md5OnlyUserIsOfferedMd5Only) {
  ClientAnswer answer;
  answer.username = "bob";
  answer.password = "hunter2";
  answer.nonce = FreshNonce();
  AuthDecision decision = Run(answer.Header(), "bob");
  ASSERT_EQ(decision.outcome, AuthOutcome::kChallenge) << decision.reason;
  ASSERT_EQ(decision.challenges.size(), 1u);
  EXPECT_NE(decision.challenges[0].find("algorithm=MD5"), std::string::npos);
  answer.nonce = NonceOf(decision.challenges[0]);
  answer.Use(DigestAlgorithm::kMd5);
  EXPECT_EQ(Run(answer.Header(), "bob").outcome, AuthOutcome::kAccept);
}

TEST_F(AuthenticatorTest, ConfiguredAlgorithmsOnly) {
  DigestAuthenticatorOptions options;
  options.algorithms = {DigestAlgorithm::kSha256};
  Reset(options);
  AuthDecision challenge = Run(std::nullopt);
  ASSERT_EQ(challenge.challenges.size(), 1u);
  ClientAnswer answer;
  answer.nonce = NonceOf(challenge.challenges[0]);
  answer.Use(DigestAlgorithm::kMd5);
  EXPECT_EQ(Run(answer.Header()).outcome, AuthOutcome::kChallenge);
}

TEST_F(AuthenticatorTest, UnknownUserLooksLikeWrongPassword) {
  ClientAnswer wrong_password;
  wrong_password.nonce = FreshNonce();
  wrong_password.password = "guess";
  ClientAnswer unknown;
  unknown.nonce = FreshNonce();
  unknown.username = "nobody";
  AuthDecision a = Run(wrong_password.Header(), "alice", "192.0.2.10");
  AuthDecision b = Run(unknown.Header(), "nobody", "192.0.2.11");
  EXPECT_EQ(a.outcome, AuthOutcome::kForbidden);
  EXPECT_EQ(b.outcome, AuthOutcome::kForbidden);
  EXPECT_EQ(a.status_code(), b.status_code());
  EXPECT_EQ(a.challenges, b.challenges);
}

TEST_F(AuthenticatorTest, ThrottlesAfterRepeatedFailuresThenReleases) {
  ClientAnswer right;
  right.nonce = FreshNonce();  // challenges are not given while throttled
  ClientAnswer wrong;
  wrong.password = "guess";
  for (int i = 0; i < 5; ++i) {
    wrong.nonce = FreshNonce();
    EXPECT_EQ(Run(wrong.Header()).outcome, AuthOutcome::kForbidden) << i;
  }
  AuthDecision decision = Run(right.Header());
  EXPECT_EQ(decision.outcome, AuthOutcome::kThrottled);
  EXPECT_EQ(decision.status_code(), 503);
  EXPECT_EQ(decision.retry_after, seconds(30));
  // Nor to other sources for the same user, nor to the source for other users.
  EXPECT_EQ(Run(std::nullopt, "alice", "203.0.113.5").outcome, AuthOutcome::kThrottled);
  EXPECT_EQ(Run(std::nullopt, "bob", "192.0.2.1").outcome, AuthOutcome::kThrottled);
  EXPECT_EQ(Run(std::nullopt, "bob", "203.0.113.5").outcome, AuthOutcome::kChallenge);

  clock_.Advance(seconds(30));
  decision = Run(right.Header());
  EXPECT_EQ(decision.outcome, AuthOutcome::kAccept) << decision.reason;

  AuthCounters counters = auth_->counters();
  EXPECT_EQ(counters.forbidden, 5u);
  EXPECT_EQ(counters.throttled, 3u);
  EXPECT_EQ(counters.accepted, 1u);
  EXPECT_EQ(auth_->throttle_counters().failures, 5u);
}

TEST_F(AuthenticatorTest, ExplicitChallenge) {
  AuthDecision decision = auth_->Challenge("other.example.com", /*stale=*/true);
  EXPECT_EQ(decision.outcome, AuthOutcome::kStaleChallenge);
  ASSERT_EQ(decision.challenges.size(), 2u);
  EXPECT_NE(decision.challenges[1].find("realm=\"other.example.com\""), std::string::npos);
  EXPECT_NE(decision.challenges[1].find("stale=true"), std::string::npos);
}

TEST_F(AuthenticatorTest, GarbageNeverCrashes) {
  DigestAuthenticatorOptions options;
  options.throttle.max_failures_per_source = 1000000;
  options.throttle.max_failures_per_user = 1000000;
  Reset(options);
  ClientAnswer answer;
  answer.nonce = FreshNonce();
  const std::string seed = answer.Header();
  std::mt19937 rng(7);
  int accepted = 0;
  for (int round = 0; round < 5000; ++round) {
    std::string value = seed;
    int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !value.empty(); ++e) {
      size_t at = rng() % value.size();
      switch (rng() % 3) {
        case 0:
          value[at] = static_cast<char>(rng() % 256);
          break;
        case 1:
          value.erase(at, 1 + rng() % 8);
          break;
        default:
          value.insert(at, 1, "\",\\= @;\r"[rng() % 8]);
          break;
      }
    }
    AuthDecision decision = Run(value);
    if (decision.outcome == AuthOutcome::kAccept) ++accepted;
  }
  // The seed's only count can be accepted at most once.
  EXPECT_LE(accepted, 1);
}

}  // namespace
}  // namespace tandem
