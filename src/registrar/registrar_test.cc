#include "registrar/registrar.h"

#include <gtest/gtest.h>

#include "auth/digest.h"
#include "sip/parser.h"

namespace tandem {
namespace {

// A server transaction that records what the registrar answered.
class RecordingTransaction : public sip::ServerTransaction {
 public:
  explicit RecordingTransaction(sip::SipMessage request) : request_(std::move(request)) {
    source_.address = "127.0.0.1";
    source_.port = 5070;
  }
  const sip::SipMessage& request() const override { return request_; }
  const sip::MessageSource& source() const override { return source_; }
  void Respond(sip::SipMessage response) override { responses.push_back(std::move(response)); }
  void Respond(int status_code, std::string_view reason) override {
    responses.push_back(sip::BuildResponse(request_, status_code, reason));
  }
  bool cancelled() const override { return false; }

  std::vector<sip::SipMessage> responses;

 private:
  sip::SipMessage request_;
  sip::MessageSource source_;
};

class RegistrarTest : public ::testing::Test {
 protected:
  RegistrarTest()
      : authenticator_(DigestAuthenticatorOptions{}, clock_),
        registrar_(RegistrarOptions{.domain = "example.com"}, bindings_, authenticator_,
                   [this](const std::string& user, const std::string& domain) -> Result<std::optional<UserRecord>> {
                     if (user != "alice" || domain != "example.com") return std::optional<UserRecord>();
                     UserRecord record;
                     record.ha1_md5 = *ComputeHa1("alice", "example.com", "secret", DigestAlgorithm::kMd5);
                     record.ha1_sha256 = *ComputeHa1("alice", "example.com", "secret", DigestAlgorithm::kSha256);
                     return std::optional<UserRecord>(record);
                   },
                   metrics_, clock_) {}

  // Sends a REGISTER (with `extra` headers) and returns the response.
  sip::SipMessage Register(const std::string& extra, int cseq = 1, const std::string& user = "alice") {
    std::string text = "REGISTER sip:example.com SIP/2.0\r\n"
                       "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK" + std::to_string(cseq) + "\r\n"
                       "From: <sip:" + user + "@example.com>;tag=1\r\n"
                       "To: <sip:" + user + "@example.com>\r\n"
                       "Call-ID: reg-1\r\n"
                       "CSeq: " + std::to_string(cseq) + " REGISTER\r\n"
                       "Max-Forwards: 70\r\n" + extra + "Content-Length: 0\r\n\r\n";
    auto request = sip::ParseMessage(text);
    EXPECT_TRUE(request) << request.error().reason;
    auto transaction = std::make_shared<RecordingTransaction>(std::move(*request));
    registrar_.HandleRegister(transaction);
    EXPECT_EQ(transaction->responses.size(), 1u);
    return transaction->responses.at(0);
  }

  // The Authorization header answering `challenge` with `password` (MD5, qop=auth).
  std::string Answer(const sip::SipMessage& challenge, const std::string& password, const std::string& nc = "00000001") {
    std::string nonce;
    for (size_t i = 0; i < challenge.header_count(); ++i) {
      auto header = challenge.header(i);
      if (header.value.find("algorithm=MD5") == std::string_view::npos) continue;
      auto start = header.value.find("nonce=\"") + 7;
      nonce = std::string(header.value.substr(start, header.value.find('"', start) - start));
    }
    EXPECT_FALSE(nonce.empty());
    std::string ha1 = *ComputeHa1("alice", "example.com", password, DigestAlgorithm::kMd5);
    std::string response = *ComputeResponse(ha1, nonce, nc, "abc", "auth", "REGISTER", "sip:example.com",
                                            DigestAlgorithm::kMd5);
    return "Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"" + nonce +
           "\", uri=\"sip:example.com\", response=\"" + response + "\", algorithm=MD5, qop=auth, nc=" + nc +
           ", cnonce=\"abc\"\r\n";
  }

  FakeClock clock_;
  MetricsRegistry metrics_;
  BindingTable bindings_;
  DigestAuthenticator authenticator_;
  Registrar registrar_;
};

TEST_F(RegistrarTest, ChallengesThenRegistersWithTheRightPassword) {
  auto challenge = Register("Contact: <sip:alice@127.0.0.1:5070>\r\n");
  ASSERT_EQ(challenge.status_code(), 401);
  EXPECT_EQ(challenge.CountHeaders(sip::HeaderId::kWwwAuthenticate), 2u) << "SHA-256 and MD5 are offered";
  auto ok = Register(Answer(challenge, "secret") + "Contact: <sip:alice@127.0.0.1:5070>\r\nExpires: 600\r\n", 2);
  ASSERT_EQ(ok.status_code(), 200);
  EXPECT_EQ(*ok.FindHeader(sip::HeaderId::kContact), "<sip:alice@127.0.0.1:5070>;expires=600");
  EXPECT_TRUE(ok.FindHeader("Date").has_value());
  EXPECT_EQ(bindings_.user_count(), 1u);
}

TEST_F(RegistrarTest, WrongPasswordIsForbiddenAndRegistersNothing) {
  auto challenge = Register("Contact: <sip:alice@127.0.0.1:5070>\r\n");
  auto refused = Register(Answer(challenge, "wrong") + "Contact: <sip:alice@127.0.0.1:5070>\r\n", 2);
  EXPECT_EQ(refused.status_code(), 403);
  EXPECT_EQ(bindings_.user_count(), 0u);
}

TEST_F(RegistrarTest, TooBriefExpiresGets423WithMinExpires) {
  auto challenge = Register("Contact: <sip:alice@127.0.0.1:5070>\r\n");
  auto brief = Register(Answer(challenge, "secret") + "Contact: <sip:alice@127.0.0.1:5070>;expires=10\r\n", 2);
  EXPECT_EQ(brief.status_code(), 423);
  EXPECT_EQ(*brief.FindHeader("Min-Expires"), "60");
}

TEST_F(RegistrarTest, StarNeedsExpiresZero) {
  auto challenge = Register("Contact: *\r\n");
  auto bad = Register(Answer(challenge, "secret") + "Contact: *\r\n", 2);
  EXPECT_EQ(bad.status_code(), 400);
  auto ok = Register(Answer(challenge, "secret", "00000002") + "Contact: *\r\nExpires: 0\r\n", 3);
  EXPECT_EQ(ok.status_code(), 200);
}

TEST_F(RegistrarTest, UnknownExtensionIs420AndForeignDomainIs404) {
  auto extension = Register("Require: nonsense\r\nContact: <sip:alice@h>\r\n");
  EXPECT_EQ(extension.status_code(), 420);
  EXPECT_EQ(*extension.FindHeader("Unsupported"), "nonsense");
  std::string text = "REGISTER sip:other.org SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK9\r\n"
                     "From: <sip:alice@other.org>;tag=1\r\nTo: <sip:alice@other.org>\r\nCall-ID: x\r\n"
                     "CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";
  auto transaction = std::make_shared<RecordingTransaction>(*sip::ParseMessage(text));
  registrar_.HandleRegister(transaction);
  EXPECT_EQ(transaction->responses.at(0).status_code(), 404);
}

}  // namespace
}  // namespace tandem
