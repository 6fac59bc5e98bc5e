#include "sip/uri.h"

#include <gtest/gtest.h>

#include "sip/syntax.h"

namespace tandem::sip {
namespace {

Uri Parse(std::string_view text) {
  Result<Uri> uri = ParseUri(text);
  EXPECT_TRUE(uri.has_value()) << text << ": " << (uri ? "" : uri.error().message);
  return uri.value_or(Uri{});
}

TEST(UriTest, FullSipUri) {
  Uri u = Parse("sip:alice:secret@atlanta.com:5061;transport=tcp;lr?subject=project%20x&priority=urgent");
  EXPECT_EQ(u.scheme, UriScheme::kSip);
  EXPECT_TRUE(u.has_user);
  EXPECT_EQ(u.user, "alice");
  EXPECT_TRUE(u.has_password);
  EXPECT_EQ(u.password, "secret");
  EXPECT_EQ(u.host, "atlanta.com");
  EXPECT_EQ(u.host_kind, HostKind::kDomain);
  EXPECT_TRUE(u.has_port);
  EXPECT_EQ(u.port, 5061);
  EXPECT_EQ(u.params, "transport=tcp;lr");
  EXPECT_EQ(u.Param("transport"), "tcp");
  EXPECT_EQ(u.Param("LR"), "");
  EXPECT_FALSE(u.Param("maddr").has_value());
  EXPECT_EQ(u.headers, "subject=project%20x&priority=urgent");
  EXPECT_EQ(u.Header("Subject"), "project%20x");
  EXPECT_EQ(u.Header("priority"), "urgent");
}

TEST(UriTest, HostOnlyAndSips) {
  Uri u = Parse("SIPS:example.com");
  EXPECT_EQ(u.scheme, UriScheme::kSips);
  EXPECT_EQ(u.scheme_text, "SIPS");
  EXPECT_FALSE(u.has_user);
  EXPECT_EQ(u.host, "example.com");
  EXPECT_FALSE(u.has_port);
}

TEST(UriTest, Ipv4AndIpv6Hosts) {
  Uri v4 = Parse("sip:bob@192.0.2.4:5060");
  EXPECT_EQ(v4.host_kind, HostKind::kIpv4);
  EXPECT_EQ(v4.port, 5060);
  Uri v6 = Parse("sip:bob@[2001:db8::10]:5070;transport=udp");
  EXPECT_EQ(v6.host_kind, HostKind::kIpv6);
  EXPECT_EQ(v6.host, "[2001:db8::10]");
  EXPECT_EQ(v6.HostAddress(), "2001:db8::10");
  EXPECT_EQ(v6.port, 5070);
  Uri v6plain = Parse("sip:[::ffff:192.0.2.1]");
  EXPECT_EQ(v6plain.host_kind, HostKind::kIpv6);
  EXPECT_FALSE(v6plain.has_port);
}

TEST(UriTest, UserPartWithReservedCharacters) {
  Uri u = Parse("sip:user;par=u%40example.net@example.com");
  EXPECT_EQ(u.user, "user;par=u%40example.net");
  EXPECT_EQ(u.UnescapedUser(), "user;par=u@example.net");
  EXPECT_EQ(u.host, "example.com");
  EXPECT_TRUE(u.params.empty());
  Uri phone = Parse("sip:+1-212-555-1212:1234@gateway.com;user=phone");
  EXPECT_EQ(phone.user, "+1-212-555-1212");
  EXPECT_EQ(phone.password, "1234");
  EXPECT_EQ(phone.Param("user"), "phone");
}

TEST(UriTest, EscapedParameterNames) {
  Uri u = Parse("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
  EXPECT_EQ(u.UnescapedUser(), "caller");
  EXPECT_TRUE(u.HasParam("lr"));
  EXPECT_EQ(Unescape(*u.Param("name")), "value%41");
}

TEST(UriTest, OtherSchemes) {
  Uri tel = Parse("tel:+358-555-1234567;postd=pp22");
  EXPECT_EQ(tel.scheme, UriScheme::kTel);
  EXPECT_EQ(tel.opaque, "+358-555-1234567;postd=pp22");
  Uri beep = Parse("soap.beep://192.0.2.103:3002");
  EXPECT_EQ(beep.scheme, UriScheme::kOther);
  EXPECT_EQ(beep.scheme_text, "soap.beep");
  Uri isbn = Parse("isbn:2983792873");
  EXPECT_EQ(isbn.opaque, "2983792873");
  Parse("http://www.example.com");
  Parse("name:John_Smith");
  Parse("mailto:alice@example.com");
}

TEST(UriTest, RejectsMalformed) {
  const char* bad[] = {
      "",
      "sip",
      "sip:",
      ":user@host",
      "1sip:host",
      "sip:user@",
      "sip:@host",
      "sip:user@host:",
      "sip:user@host:99999",
      "sip:user@host:5x",
      "sip:user name@host",
      "sip:user@ho st",
      "sip:user@host;",
      "sip:user@host;;lr",
      "sip:user@host;p=",
      "sip:user@host?",
      "sip:user@host?h",
      "sip:user@host?a=b&",
      "sip:us%2ger@host",
      "sip:us%zzer@host",
      "sip:user@[2001:db8::1",
      "sip:user@[not-ipv6]",
      "sip:user@[::1]x",
      "sip:user@-bad.example.com",
      "sip:user@bad..example.com",
      "sip:user@1.2.3.4.5",
      "sip:user@256.1.1.1",
      "sip:a@b@c",
      "sip:user@host<",
      "foo:",
      "foo:has space",
      "foo:<bracket>",
      "<sip:user@example.com>",
  };
  for (const char* text : bad) {
    EXPECT_FALSE(ParseUri(text).has_value()) << "accepted: " << text;
  }
}

TEST(UriTest, ComparisonRfc3261Equivalent) {
  // RFC 3261 19.1.4 examples of equivalent URIs.
  const std::pair<const char*, const char*> equal[] = {
      {"sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"},
      {"sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"},
      {"sip:carol@chicago.com", "sip:carol@chicago.com;security=on"},
      {"sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"},
      {"sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
       "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"},
      {"sip:alice@atlanta.com?subject=project%20x&priority=urgent",
       "sip:alice@atlanta.com?priority=urgent&subject=project%20x"},
      {"sip:%75se%72@example.com", "sip:user@example.com"},
  };
  for (const auto& [a, b] : equal) {
    EXPECT_TRUE(UriEquals(Parse(a), Parse(b))) << a << " vs " << b;
    EXPECT_TRUE(UriEquals(Parse(b), Parse(a))) << b << " vs " << a;
  }
}

TEST(UriTest, ComparisonRfc3261NotEquivalent) {
  const std::pair<const char*, const char*> different[] = {
      {"SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"},
      {"sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"},
      {"sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"},
      {"sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"},
      {"sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"},
      {"sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"},
      {"sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"},
      {"sip:user@example.com", "sips:user@example.com"},
      {"sip:a%40b@example.com", "sip:a@example.com"},
  };
  for (const auto& [a, b] : different) {
    EXPECT_FALSE(UriEquals(Parse(a), Parse(b))) << a << " vs " << b;
    EXPECT_FALSE(UriEquals(Parse(b), Parse(a))) << b << " vs " << a;
  }
}

TEST(UriTest, ComparisonIsReflexiveWithRepeatedNames) {
  // Found by the fuzzer: a repeated parameter name broke UriEquals(u, u).
  Uri u = Parse("sip:a@b;x=1;y;x=2?h=1&h=2&h=%3F");
  EXPECT_TRUE(UriEquals(u, u));
  EXPECT_TRUE(UriEquals(u, Parse("sip:a@b;X=1;x=3?h=%3F&H=2&h=1")));  // the first x counts
  EXPECT_FALSE(UriEquals(u, Parse("sip:a@b;x=1?h=1&h=2&h=?")));      // escaped '?' is not '?'
  EXPECT_FALSE(UriEquals(u, Parse("sip:a@b;x=1?h=1&h=2")));
}

TEST(UriTest, ComparisonOfHugeParameterListsIsFast) {
  std::string a = "sip:a@b";
  std::string b = "sip:a@b";
  for (int i = 0; i < 20000; ++i) {
    a += ";p" + std::to_string(i) + "=v";
    b += ";p" + std::to_string(19999 - i) + "=v";
  }
  EXPECT_TRUE(UriEquals(Parse(a), Parse(b)));  // n log n; quadratic would take minutes
}

TEST(UriTest, ClassifyHost) {
  EXPECT_EQ(ClassifyHost("example.com."), HostKind::kDomain);
  EXPECT_EQ(ClassifyHost("a-b.c"), HostKind::kDomain);
  EXPECT_EQ(ClassifyHost("10.0.0.1"), HostKind::kIpv4);
  EXPECT_EQ(ClassifyHost("[::1]"), HostKind::kIpv6);
  EXPECT_EQ(ClassifyHost("1.2.3"), HostKind::kNone);
  EXPECT_EQ(ClassifyHost(""), HostKind::kNone);
  EXPECT_EQ(ClassifyHost("."), HostKind::kNone);
}

}  // namespace
}  // namespace tandem::sip
