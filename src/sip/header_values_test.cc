#include "sip/header_values.h"

#include <gtest/gtest.h>

namespace tandem::sip {
namespace {

TEST(ViaTest, Typical) {
  Result<ViaHeader> via = ParseVia("SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport");
  ASSERT_TRUE(via.has_value()) << via.error().message;
  EXPECT_EQ(via->protocol_name, "SIP");
  EXPECT_EQ(via->protocol_version, "2.0");
  EXPECT_EQ(via->transport, "UDP");
  EXPECT_EQ(via->host, "pc33.atlanta.com");
  EXPECT_TRUE(via->has_port);
  EXPECT_EQ(via->port, 5066);
  EXPECT_EQ(via->branch, "z9hG4bK776asdhds");
  EXPECT_TRUE(via->has_rport);
  EXPECT_FALSE(via->rport.has_value());
  EXPECT_TRUE(IsRfc3261Branch(via->branch));
}

TEST(ViaTest, ReceivedRportAndIpv6) {
  Result<ViaHeader> via =
      ParseVia("SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bKx;received=2001:db8::1;rport=40000;ttl=16");
  ASSERT_TRUE(via.has_value()) << via.error().message;
  EXPECT_EQ(via->host, "[2001:db8::9]");
  EXPECT_EQ(via->host_kind, HostKind::kIpv6);
  EXPECT_EQ(via->port, 5061);
  EXPECT_EQ(via->received, "2001:db8::1");
  EXPECT_EQ(via->rport, 40000);
  EXPECT_EQ(via->Param("ttl"), "16");
  Result<ViaHeader> v4 = ParseVia("SIP/2.0/UDP host;received=192.0.2.5");
  ASSERT_TRUE(v4.has_value());
  EXPECT_EQ(v4->received, "192.0.2.5");
  EXPECT_TRUE(v4->branch.empty());
}

TEST(ViaTest, WhiteSpaceEverywhereRfc4475) {
  Result<ViaHeader> via = ParseVia("SIP  /    2.0   / UDP  192.168.255.111   ; branch=    z9hG4bK30239");
  ASSERT_TRUE(via.has_value()) << via.error().message;
  EXPECT_EQ(via->transport, "UDP");
  EXPECT_EQ(via->host, "192.168.255.111");
  EXPECT_EQ(via->branch, "z9hG4bK30239");
  Result<ViaHeader> spaced_port = ParseVia("SIP/2.0/UDP host : 5060 ;branch=z9hG4bKa");
  ASSERT_TRUE(spaced_port.has_value());
  EXPECT_EQ(spaced_port->port, 5060);
}

TEST(ViaTest, Rejects) {
  const char* bad[] = {
      "",
      "SIP/2.0/UDP",
      "SIP/2.0 host",
      "SIP/2.0/UDPhost",
      "SIP/2.0/UDP 192.0.2.15;;",
      "SIP/2.0/UDP host;branch=",
      "SIP/2.0/UDP host;branch=\"quoted\"",
      "SIP/2.0/UDP host;received=not-an-ip",
      "SIP/2.0/UDP 192.0.2.5;received",  // found by the fuzzer (UB before the fix)
      "SIP/2.0/UDP host;rport=70000",
      "SIP/2.0/UDP host;ttl=300",
      "SIP/2.0/UDP host:99999",
      "SIP/2.0/UDP host:",
      "SIP/2.0/UDP ho st",
      "SIP/2.0/UDP host junk",
  };
  for (const char* text : bad) EXPECT_FALSE(ParseVia(text).has_value()) << text;
}

TEST(ViaTest, BranchCookie) {
  EXPECT_FALSE(IsRfc3261Branch("z9hG4bK"));
  EXPECT_FALSE(IsRfc3261Branch("390skdjuw"));
  EXPECT_FALSE(IsRfc3261Branch(""));
  EXPECT_TRUE(IsRfc3261Branch("z9hG4bK1"));
}

TEST(CSeqTest, ParsesAndRejects) {
  Result<CSeqHeader> c = ParseCSeq("0009    INVITE");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->number, 9u);
  EXPECT_EQ(c->method, "INVITE");
  EXPECT_EQ(ParseCSeq("4294967295 ACK")->number, 4294967295u);
  EXPECT_FALSE(ParseCSeq("36893488147419103232 REGISTER").has_value());
  EXPECT_FALSE(ParseCSeq("INVITE").has_value());
  EXPECT_FALSE(ParseCSeq("1").has_value());
  EXPECT_FALSE(ParseCSeq("1INVITE").has_value());
  EXPECT_FALSE(ParseCSeq("1 INVITE x").has_value());
  EXPECT_FALSE(ParseCSeq("-1 INVITE").has_value());
}

TEST(NameAddrTest, Forms) {
  Result<NameAddr> a = ParseNameAddr("\"Bob \\\"B\\\"\" <sips:bob@biloxi.com>;tag=a48s");
  ASSERT_TRUE(a.has_value()) << a.error().message;
  EXPECT_EQ(a->DisplayName(), "Bob \"B\"");
  EXPECT_TRUE(a->angle_brackets);
  EXPECT_EQ(a->uri.scheme, UriScheme::kSips);
  EXPECT_EQ(a->Tag(), "a48s");

  Result<NameAddr> b = ParseNameAddr("Anonymous <sip:c8oqz84zk7z@privacy.org>;tag=hyh8");
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->DisplayName(), "Anonymous");

  Result<NameAddr> c = ParseNameAddr("sip:+12125551212@server.phone2net.com;tag=887s");
  ASSERT_TRUE(c.has_value());
  EXPECT_FALSE(c->angle_brackets);
  EXPECT_EQ(c->uri.text, "sip:+12125551212@server.phone2net.com");
  EXPECT_EQ(c->Tag(), "887s");

  Result<NameAddr> d = ParseNameAddr("<sip:a@b;lr>");
  ASSERT_TRUE(d.has_value());
  EXPECT_TRUE(d->uri.HasParam("lr"));
  EXPECT_EQ(d->Tag(), "");

  Result<NameAddr> e = ParseNameAddr("Two Words<sip:a@b> ; tag = x ; flag");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->DisplayName(), "Two Words");
  EXPECT_EQ(e->Tag(), "x");
  EXPECT_EQ(e->Param("flag"), "");
}

TEST(NameAddrTest, RejectsRfc4475Forms) {
  const char* bad[] = {
      "\"Mr. J. User <sip:j.user@example.com>",              // quotbal
      "\"Watson, Thomas\" < sip:t.watson@example.org >",      // badaspec
      "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",   // baddn
      "sip:user@example.com?Route=%3Csip:sip.example.com%3E",  // regbadct
      "\"Joe\" <sip:joe@example.org>;;;;",                   // badinv01
      "",
      "<>",
      "<sip:a@b",
      "<sip:a@b> junk",
      "\"name\" sip:a@b",
      "<sip:a@b>;tag=",
      "<sip:a b@c>",
  };
  for (const char* text : bad) EXPECT_FALSE(ParseNameAddr(text).has_value()) << text;
}

TEST(ContactTest, ListStarQAndExpires) {
  ContactList list;
  ASSERT_TRUE(AppendContacts("<sip:a@h1>;q=0.7;expires=3600, \"B\" <sip:b@h2>;q=1", &list).has_value());
  ASSERT_TRUE(AppendContacts("sip:c@h3;expires=0", &list).has_value());
  ASSERT_EQ(list.contacts.size(), 3u);
  EXPECT_FALSE(list.is_star);
  EXPECT_EQ(*ContactQ(list.contacts[0]), 700);
  EXPECT_EQ(*ContactExpires(list.contacts[0]), 3600u);
  EXPECT_EQ(*ContactQ(list.contacts[1]), 1000);
  EXPECT_FALSE(ContactExpires(list.contacts[1])->has_value());
  EXPECT_EQ(*ContactExpires(list.contacts[2]), 0u);

  ContactList star;
  ASSERT_TRUE(AppendContacts(" * ", &star).has_value());
  EXPECT_TRUE(star.is_star);
  EXPECT_FALSE(AppendContacts("<sip:a@b>", &star).has_value());
  ContactList mixed;
  EXPECT_FALSE(AppendContacts("<sip:a@b>, *", &mixed).has_value());
  ContactList empty;
  EXPECT_FALSE(AppendContacts("", &empty).has_value());
}

TEST(ContactTest, OverlargeExpiresIsAnError) {
  ContactList list;
  ASSERT_TRUE(AppendContacts("<sip:user@host129.example.com>;expires=280297596632815", &list).has_value());
  EXPECT_FALSE(ContactExpires(list.contacts[0]).has_value());
}

TEST(ScalarTest, QValues) {
  EXPECT_EQ(*ParseQValue("0"), 0);
  EXPECT_EQ(*ParseQValue("0.5"), 500);
  EXPECT_EQ(*ParseQValue("0.33"), 330);
  EXPECT_EQ(*ParseQValue("0.001"), 1);
  EXPECT_EQ(*ParseQValue("1.000"), 1000);
  EXPECT_FALSE(ParseQValue("1.5").has_value());
  EXPECT_FALSE(ParseQValue("2").has_value());
  EXPECT_FALSE(ParseQValue("0.1234").has_value());
  EXPECT_FALSE(ParseQValue("0,5").has_value());
  EXPECT_FALSE(ParseQValue("").has_value());
}

TEST(ScalarTest, Numbers) {
  EXPECT_EQ(*ParseDeltaSeconds(" 3600 "), 3600u);
  EXPECT_FALSE(ParseDeltaSeconds("1000000000000000000000").has_value());
  EXPECT_EQ(*ParseContentLength("150"), 150u);
  EXPECT_FALSE(ParseContentLength("-999").has_value());
  EXPECT_FALSE(ParseContentLength("").has_value());
  EXPECT_EQ(*ParseMaxForwards("0068"), 68);
  EXPECT_FALSE(ParseMaxForwards("300").has_value());
}

TEST(ScalarTest, CallIdAndDate) {
  EXPECT_TRUE(IsValidCallId("a84b4c76e66710@pc33.atlanta.com"));
  EXPECT_TRUE(IsValidCallId("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"));
  EXPECT_FALSE(IsValidCallId("a@b@c"));
  EXPECT_FALSE(IsValidCallId("has space"));
  EXPECT_FALSE(IsValidCallId("@host"));
  EXPECT_FALSE(IsValidCallId(""));
  EXPECT_TRUE(IsValidSipDate("Sat, 13 Nov 2010 23:29:00 GMT"));
  EXPECT_TRUE(IsValidSipDate("Sat, 15 Oct 2005 04:44:56 GMT"));
  EXPECT_FALSE(IsValidSipDate("Fri, 01 Jan 2010 16:00:00 EST"));
  EXPECT_FALSE(IsValidSipDate("Sat, 13 Nov 2010 23:29:00"));
  EXPECT_FALSE(IsValidSipDate("Xyz, 13 Nov 2010 23:29:00 GMT"));
}

TEST(AuthTest, DigestCredentials) {
  Result<AuthHeader> auth = ParseAuthHeader(
      "Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\","
      " uri=\"sip:bob@biloxi.com\", qop=auth, nc=00000001, cnonce=\"0a4f113b\","
      " response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"");
  ASSERT_TRUE(auth.has_value()) << auth.error().message;
  EXPECT_EQ(auth->scheme, "Digest");
  EXPECT_EQ(auth->Param("username"), "bob");
  EXPECT_EQ(auth->Param("URI"), "sip:bob@biloxi.com");
  EXPECT_EQ(auth->Param("qop"), "auth");
  EXPECT_EQ(auth->Param("nc"), "00000001");
  EXPECT_EQ(auth->params.size(), 9u);
  EXPECT_FALSE(auth->Param("algorithm").has_value());
}

TEST(AuthTest, ChallengeWithCommaInsideQuotes) {
  Result<AuthHeader> auth =
      ParseAuthHeader("Digest realm=\"atlanta.com\", domain=\"sip:a.com, sip:b.com\", qop=\"auth,auth-int\","
                      " nonce=\"84a4cc6f3082121f32b42a2187831a9e\", stale=FALSE, algorithm=MD5");
  ASSERT_TRUE(auth.has_value()) << auth.error().message;
  EXPECT_EQ(auth->Param("domain"), "sip:a.com, sip:b.com");
  EXPECT_EQ(auth->Param("qop"), "auth,auth-int");
  EXPECT_EQ(auth->Param("stale"), "FALSE");
  EXPECT_EQ(auth->Param("algorithm"), "MD5");
}

TEST(AuthTest, OtherSchemesAndErrors) {
  Result<AuthHeader> unknown = ParseAuthHeader("NoOneKnowsThisScheme opaque-data=here");
  ASSERT_TRUE(unknown.has_value());
  EXPECT_EQ(unknown->scheme, "NoOneKnowsThisScheme");
  EXPECT_EQ(unknown->Param("opaque-data"), "here");
  Result<AuthHeader> basic = ParseAuthHeader("Basic dXNlcjpwYXNz==");
  ASSERT_TRUE(basic.has_value());
  EXPECT_EQ(basic->token68, "dXNlcjpwYXNz==");
  EXPECT_FALSE(ParseAuthHeader("").has_value());
  EXPECT_FALSE(ParseAuthHeader("Digest realm=\"unterminated").has_value());
  EXPECT_FALSE(ParseAuthHeader("Digest a=b c=d").has_value());
  EXPECT_FALSE(ParseAuthHeader("Digest =b").has_value());
}

TEST(GenericParamTest, IteratesAndValidates) {
  GenericParamIterator it(" ; a = 1 ;b; c=\"x;y\" ;d=[::1]");
  GenericParam p;
  ASSERT_TRUE(it.Next(&p));
  EXPECT_EQ(p.name, "a");
  EXPECT_EQ(p.value, "1");
  ASSERT_TRUE(it.Next(&p));
  EXPECT_EQ(p.name, "b");
  EXPECT_FALSE(p.has_value);
  ASSERT_TRUE(it.Next(&p));
  EXPECT_EQ(p.value, "\"x;y\"");
  ASSERT_TRUE(it.Next(&p));
  EXPECT_EQ(p.value, "[::1]");
  EXPECT_FALSE(it.Next(&p));
  EXPECT_TRUE(it.ok());
  EXPECT_FALSE(ValidateGenericParams(";;"));
  EXPECT_FALSE(ValidateGenericParams("junk"));
  EXPECT_FALSE(ValidateGenericParams(";a=\"open"));
  EXPECT_TRUE(ValidateGenericParams(""));
  EXPECT_TRUE(ValidateGenericParams("   "));
}

}  // namespace
}  // namespace tandem::sip
