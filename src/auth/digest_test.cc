#include "auth/digest.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace tandem {
namespace {

// RFC 7616 §3.9.1.
constexpr std::string_view kRfc7616Realm = "http-auth@example.org";
constexpr std::string_view kRfc7616Nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
constexpr std::string_view kRfc7616Cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

std::string Must(Result<std::string> result) {
  EXPECT_TRUE(result.has_value()) << result.error().ToString();
  return result.value_or("");
}

TEST(DigestTest, Rfc2617Section35Vector) {
  std::string ha1 =
      Must(ComputeHa1("Mufasa", "testrealm@host.com", "Circle Of Life", DigestAlgorithm::kMd5));
  EXPECT_EQ(ha1, "939e7578ed9e3c518a452acee763bce9");
  EXPECT_EQ(Must(ComputeResponse(ha1, "dcd98b7102dd2f0e8b11d0f600bfb0c093", "00000001", "0a4f113b",
                                 "auth", "GET", "/dir/index.html", DigestAlgorithm::kMd5)),
            "6629fae49393a05397450978507c4ef1");
}

TEST(DigestTest, Rfc7616Sha256Vector) {
  std::string ha1 =
      Must(ComputeHa1("Mufasa", kRfc7616Realm, "Circle of Life", DigestAlgorithm::kSha256));
  EXPECT_EQ(ha1.size(), 64u);
  EXPECT_EQ(Must(ComputeResponse(ha1, kRfc7616Nonce, "00000001", kRfc7616Cnonce, "auth", "GET",
                                 "/dir/index.html", DigestAlgorithm::kSha256)),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
}

TEST(DigestTest, Rfc7616Md5Vector) {
  std::string ha1 =
      Must(ComputeHa1("Mufasa", kRfc7616Realm, "Circle of Life", DigestAlgorithm::kMd5));
  EXPECT_EQ(Must(ComputeResponse(ha1, kRfc7616Nonce, "00000001", kRfc7616Cnonce, "auth", "GET",
                                 "/dir/index.html", DigestAlgorithm::kMd5)),
            "8ca523f5e9506fed4657c9700eebdbec");
}

TEST(DigestTest, Rfc2069FormWithoutQop) {
  // Checked against Python's hashlib: MD5(HA1 ":" nonce ":" MD5("GET:/dir/index.html")).
  std::string ha1 =
      Must(ComputeHa1("Mufasa", "testrealm@host.com", "CircleOfLife", DigestAlgorithm::kMd5));
  EXPECT_EQ(ha1, "4945ecf42b1bb868634058a845bedde8");
  EXPECT_EQ(Must(ComputeResponse(ha1, "dcd98b7102dd2f0e8b11d0f600bfb0c093", "", "", "", "GET",
                                 "/dir/index.html", DigestAlgorithm::kMd5)),
            "1949323746fe6a43ef61f9606e7febea");
}

TEST(DigestTest, UpperCaseHa1IsLowered) {
  EXPECT_EQ(Must(ComputeResponse("939E7578ED9E3C518A452ACEE763BCE9",
                                 "dcd98b7102dd2f0e8b11d0f600bfb0c093", "00000001", "0a4f113b",
                                 "auth", "GET", "/dir/index.html", DigestAlgorithm::kMd5)),
            "6629fae49393a05397450978507c4ef1");
}

TEST(DigestTest, AlgorithmNames) {
  EXPECT_EQ(DigestAlgorithmName(DigestAlgorithm::kMd5), "MD5");
  EXPECT_EQ(DigestAlgorithmName(DigestAlgorithm::kSha256), "SHA-256");
  EXPECT_EQ(ParseDigestAlgorithm(""), DigestAlgorithm::kMd5);
  EXPECT_EQ(ParseDigestAlgorithm("md5"), DigestAlgorithm::kMd5);
  EXPECT_EQ(ParseDigestAlgorithm("sha-256"), DigestAlgorithm::kSha256);
  EXPECT_EQ(ParseDigestAlgorithm("MD5-sess"), std::nullopt);
  EXPECT_EQ(ParseDigestAlgorithm("SHA-512-256"), std::nullopt);
  EXPECT_EQ(ParseDigestAlgorithm("SHA256"), std::nullopt);
}

TEST(DigestTest, DigestsEqual) {
  EXPECT_TRUE(DigestsEqual("abcdef", "ABCDEF"));
  EXPECT_FALSE(DigestsEqual("abcdef", "abcdee"));
  EXPECT_FALSE(DigestsEqual("abcdef", "abcde"));
  EXPECT_TRUE(DigestsEqual("", ""));
}

TEST(DigestParseTest, Rfc2617Example) {
  Result<DigestCredentials> creds = ParseDigestCredentials(
      "Digest username=\"Mufasa\",\r\n"
      "       realm=\"testrealm@host.com\",\r\n"
      "       nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n"
      "       uri=\"/dir/index.html\",\r\n"
      "       qop=auth,\r\n"
      "       nc=00000001,\r\n"
      "       cnonce=\"0a4f113b\",\r\n"
      "       response=\"6629FAE49393A05397450978507C4EF1\",\r\n"
      "       opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"");
  ASSERT_TRUE(creds.has_value()) << creds.error().ToString();
  EXPECT_EQ(creds->username, "Mufasa");
  EXPECT_EQ(creds->realm, "testrealm@host.com");
  EXPECT_EQ(creds->nonce, "dcd98b7102dd2f0e8b11d0f600bfb0c093");
  EXPECT_EQ(creds->uri, "/dir/index.html");
  EXPECT_EQ(creds->qop, "auth");
  EXPECT_EQ(creds->nc, "00000001");
  EXPECT_EQ(creds->nonce_count, 1u);
  EXPECT_EQ(creds->cnonce, "0a4f113b");
  EXPECT_EQ(creds->response, "6629fae49393a05397450978507c4ef1");
  EXPECT_EQ(creds->opaque, "5ccc069c403ebaf9f0171e9517f40e41");
  EXPECT_EQ(creds->algorithm, "");
  EXPECT_FALSE(creds->userhash);
}

TEST(DigestParseTest, SipShapedWithEscapesAndCommasInQuotes) {
  Result<DigestCredentials> creds = ParseDigestCredentials(
      "  digest USERNAME=\"al\\\"ice\", realm=\"exa,mple.com\",nonce=\"n1\" , "
      "uri=\"sip:example.com;transport=tcp\", response=\"0123456789abcdef0123456789abcdef\", "
      "algorithm=\"SHA-256\", qop=\"AUTH\", nc=0000000A, cnonce=\"c,n\\\\\", x-ext=token, y=\"q\"");
  ASSERT_TRUE(creds.has_value()) << creds.error().ToString();
  EXPECT_EQ(creds->username, "al\"ice");
  EXPECT_EQ(creds->realm, "exa,mple.com");
  EXPECT_EQ(creds->nonce, "n1");
  EXPECT_EQ(creds->uri, "sip:example.com;transport=tcp");
  EXPECT_EQ(creds->algorithm, "SHA-256");
  EXPECT_EQ(creds->qop, "auth");
  EXPECT_EQ(creds->nc, "0000000A");
  EXPECT_EQ(creds->nonce_count, 10u);
  EXPECT_EQ(creds->cnonce, "c,n\\");
}

TEST(DigestParseTest, WithoutQopAndEmptyListElements) {
  Result<DigestCredentials> creds = ParseDigestCredentials(
      "Digest ,username=\"bob\",, realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"aa\",");
  ASSERT_TRUE(creds.has_value()) << creds.error().ToString();
  EXPECT_EQ(creds->username, "bob");
  EXPECT_TRUE(creds->qop.empty());
  EXPECT_TRUE(creds->nc.empty());
  EXPECT_EQ(creds->nonce_count, 0u);
}

TEST(DigestParseTest, Utf8InQuotedStrings) {
  Result<DigestCredentials> creds = ParseDigestCredentials(
      "Digest username=\"j\xc3\xbcrgen\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", "
      "response=\"aa\"");
  ASSERT_TRUE(creds.has_value()) << creds.error().ToString();
  EXPECT_EQ(creds->username, "j\xc3\xbcrgen");
}

TEST(DigestParseTest, HasDigestScheme) {
  EXPECT_TRUE(HasDigestScheme("Digest username=\"a\""));
  EXPECT_TRUE(HasDigestScheme("  DIGEST x"));
  EXPECT_FALSE(HasDigestScheme("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="));
  EXPECT_FALSE(HasDigestScheme("Digestive x"));
  EXPECT_FALSE(HasDigestScheme(""));
}

constexpr std::string_view kGood =
    "username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"aa\"";

TEST(DigestParseTest, MalformedHeadersAreRejected) {
  const std::string good(kGood);
  const std::vector<std::string> bad = {
      "",
      "Digest",
      "Digest ",
      "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
      "Digestusername=\"a\"",
      "Digest " + good + ", username=\"b\"",  // duplicated
      "Digest " + good + ", USERNAME=\"a\"",  // duplicated, case-insensitively
      "Digest " + good + ", x=1, x=2",        // duplicated unknown parameter
      "Digest realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"aa\"",     // no username
      "Digest username=\"a\", nonce=\"n\", uri=\"sip:r\", response=\"aa\"",  // no realm
      "Digest username=\"a\", realm=\"r\", uri=\"sip:r\", response=\"aa\"",  // no nonce
      "Digest username=\"a\", realm=\"r\", nonce=\"n\", response=\"aa\"",    // no uri
      "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:r\"",      // no response
      "Digest username=\"a, realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"aa\"",  // quotes
      "Digest " + good + ", cnonce=\"unterminated",
      "Digest " + good + ", cnonce=\"ends in backslash\\",
      "Digest " + good + ", qop=auth",                              // qop without nc and cnonce
      "Digest " + good + ", qop=auth, nc=00000001",                 // qop without cnonce
      "Digest " + good + ", qop=auth, cnonce=\"c\"",                // qop without nc
      "Digest " + good + ", nc=00000001",                           // nc without qop
      "Digest " + good + ", cnonce=\"c\"",                          // cnonce without qop
      "Digest " + good + ", qop=auth, cnonce=\"c\", nc=1",          // nc too short
      "Digest " + good + ", qop=auth, cnonce=\"c\", nc=0000000g",   // nc not hex
      "Digest " + good + ", qop=auth, cnonce=\"c\", nc=000000001",  // nc too long
      "Digest " + good + ", qop=, cnonce=\"c\", nc=00000001",       // empty qop
      "Digest " + good + ", qop=\"\", cnonce=\"c\", nc=00000001",   // empty qop
      "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"xyz\"",
      "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"\"",
      "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=" +
          std::string(130, 'a'),
      "Digest " + good + ", userhash=maybe",
      "Digest " + good + " x=1",          // missing comma
      "Digest " + good + ", =1",          // missing name
      "Digest " + good + ", x",           // missing '='
      "Digest " + good + ", x=",          // missing value
      "Digest " + good + ", x=@",         // not a token
      "Digest " + good + ", uri2=sip:r",  // unquoted non-token
      "Digest " + good + ", x=\"a\rb\"",  // control character in quotes
      "Digest " + good + ", x=\"a\nb\"",
      "Digest " + good + ", x=\"a\\\nb\"",  // escaped control character
      "Digest " + good + ", x=\"a\0b\"",
      std::string("Digest ") + good + ", x=\"a" + std::string(1, '\0') + "b\"",
      "Digest " + good + std::string(kMaxAuthorizationValueLength, ' '),
      "Digest " + good + ";",
      "Digest \"" + good + "\"",
  };
  for (const std::string& value : bad) {
    Result<DigestCredentials> creds = ParseDigestCredentials(value);
    EXPECT_FALSE(creds.has_value()) << "accepted: " << value;
    if (!creds) {
      EXPECT_EQ(creds.error().code, ErrorCode::kInvalidArgument);
      EXPECT_FALSE(creds.error().message.empty());
    }
  }
}

TEST(DigestParseTest, TooManyParameters) {
  std::string value = "Digest " + std::string(kGood);
  for (int i = 0; i < 100; ++i) value += ", p" + std::to_string(i) + "=1";
  EXPECT_FALSE(ParseDigestCredentials(value).has_value());
}

TEST(DigestParseTest, GarbageNeverCrashes) {
  std::mt19937 rng(12345);
  const std::string alphabet =
      "Digest usernamrlocqp=\",\\ \t\r\n;:@\x01\x7f\xff"
      "0123456789abcdef";
  const std::string seed = "Digest " + std::string(kGood) + ", qop=auth, nc=00000001, cnonce=\"c\"";
  int accepted = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string value;
    if (round % 2 == 0) {
      // Random bytes from an alphabet of the characters that matter.
      size_t length = rng() % 200;
      for (size_t i = 0; i < length; ++i) value.push_back(alphabet[rng() % alphabet.size()]);
    } else {
      // Mutations of a valid value: flips, truncations, insertions.
      value = seed;
      int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits && !value.empty(); ++e) {
        size_t at = rng() % value.size();
        switch (rng() % 3) {
          case 0:
            value[at] = static_cast<char>(rng() % 256);
            break;
          case 1:
            value.resize(at);
            break;
          default:
            value.insert(at, 1, alphabet[rng() % alphabet.size()]);
            break;
        }
      }
    }
    Result<DigestCredentials> creds = ParseDigestCredentials(value);
    if (creds) ++accepted;
  }
  // Some mutations stay valid; the point is that none crashed or threw.
  EXPECT_GT(accepted, 0);
}

TEST(DigestChallengeTest, BuildsChallenge) {
  DigestChallenge challenge;
  challenge.realm = "example.com";
  challenge.nonce = "abc";
  challenge.algorithm = DigestAlgorithm::kSha256;
  EXPECT_EQ(BuildChallenge(challenge),
            "Digest realm=\"example.com\", nonce=\"abc\", algorithm=SHA-256, qop=\"auth\"");
  challenge.opaque = "xyz";
  challenge.stale = true;
  challenge.algorithm = DigestAlgorithm::kMd5;
  EXPECT_EQ(BuildChallenge(challenge),
            "Digest realm=\"example.com\", nonce=\"abc\", opaque=\"xyz\", algorithm=MD5, "
            "qop=\"auth\", stale=true");
  challenge.qop_auth = false;
  challenge.stale = false;
  challenge.opaque.clear();
  EXPECT_EQ(BuildChallenge(challenge),
            "Digest realm=\"example.com\", nonce=\"abc\", algorithm=MD5");
}

TEST(DigestChallengeTest, EscapesAndDropsControlCharacters) {
  DigestChallenge challenge;
  challenge.realm = "a\"b\\c\r\nInjected: yes";
  challenge.nonce = "n";
  std::string value = BuildChallenge(challenge);
  EXPECT_EQ(value.find('\r'), std::string::npos);
  EXPECT_EQ(value.find('\n'), std::string::npos);
  EXPECT_NE(value.find("realm=\"a\\\"b\\\\cInjected: yes\""), std::string::npos) << value;
}

TEST(DigestChallengeTest, EscapedRealmReadsBackUnchanged) {
  // Challenge parameters use the credentials' grammar, so the parser can read
  // them back; the escaping must be undone exactly.
  DigestChallenge challenge;
  challenge.realm = "we\"ird\\realm";
  challenge.nonce = "n";
  challenge.opaque = "o";
  challenge.qop_auth = false;
  std::string value =
      BuildChallenge(challenge) + ", username=\"u\", uri=\"sip:x\", response=\"ab\"";
  Result<DigestCredentials> creds = ParseDigestCredentials(value);
  ASSERT_TRUE(creds.has_value()) << creds.error().ToString();
  EXPECT_EQ(creds->realm, "we\"ird\\realm");
  EXPECT_EQ(creds->opaque, "o");
}

TEST(DigestUriTest, Matches) {
  struct Case {
    std::string_view digest_uri;
    std::string_view request_uri;
    bool match;
  };
  const Case cases[] = {
      {"sip:example.com", "sip:example.com", true},
      {" sip:example.com ", "sip:example.com", true},
      {"<sip:example.com>", "sip:example.com", true},
      {"SIP:Example.COM", "sip:example.com", true},
      {"sip:example.com;transport=TCP", "sip:example.com;transport=tcp", true},
      {"sip:example.com;lr;transport=tcp", "sip:example.com;transport=tcp;lr", true},
      {"sip:example.com;foo=1", "sip:example.com", true},  // other params in one only: ignored
      {"sip:example.com;foo=1", "sip:example.com;foo=2", false},
      {"sip:example.com;transport=tcp", "sip:example.com", false},
      {"sip:example.com", "sip:example.com;maddr=1.2.3.4", false},
      {"sip:example.com", "sips:example.com", false},
      {"sip:example.com:5060", "sip:example.com", false},
      {"sip:example.com:5060", "sip:example.com:5060", true},
      {"sip:alice@example.com", "sip:alice@EXAMPLE.com", true},
      {"sip:Alice@example.com", "sip:alice@example.com", false},  // user is case-sensitive
      {"sip:alice@example.com", "sip:example.com", false},
      {"sip:[2001:db8::1]:5060", "sip:[2001:DB8::1]:5060", true},
      {"sip:[2001:db8::1]", "sip:[2001:db8::1]:5060", false},
      {"sip:example.com?subject=x", "sip:example.com?subject=x", true},
      {"sip:example.com?subject=x", "sip:example.com", false},
      {"sip:", "sip:", false},
      {"tel:+15551234", "TEL:+15551234", true},
      {"tel:+15551234", "tel:+15551235", false},
      {"/dir/index.html", "/dir/index.html", true},
      {"/dir/index.html", "/dir/Index.html", false},
      {"", "", true},
      {"sip:example.com", "", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(DigestUriMatches(c.digest_uri, c.request_uri), c.match)
        << c.digest_uri << " vs " << c.request_uri;
    EXPECT_EQ(DigestUriMatches(c.request_uri, c.digest_uri), c.match)
        << c.request_uri << " vs " << c.digest_uri << " (swapped)";
  }
}

}  // namespace
}  // namespace tandem
