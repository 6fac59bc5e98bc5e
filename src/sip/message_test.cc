#include "sip/message.h"

#include <gtest/gtest.h>

#include "sip/parser.h"

namespace tandem::sip {
namespace {

constexpr std::string_view kInvite =
    "INVITE sip:bob@biloxi.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds, SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1\r\n"
    "Via: SIP/2.0/UDP p2.example.com;branch=z9hG4bKp2\r\n"
    "Max-Forwards: 70\r\n"
    "To: Bob <sip:bob@biloxi.com>\r\n"
    "From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
    "Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Timestamp: 54\r\n"
    "Contact: <sip:alice@pc33.atlanta.com>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 4\r\n"
    "\r\n"
    "v=0\n";

SipMessage Parse(std::string_view text) {
  ParseResult<SipMessage> m = ParseMessage(std::string(text));
  EXPECT_TRUE(m.has_value()) << (m ? "" : m.error().reason) << "\n" << text;
  return m ? std::move(*m) : SipMessage();
}

TEST(BuildResponseTest, CopiesTheRfc3261Headers) {
  SipMessage request = Parse(kInvite);
  SipMessage response = BuildResponse(request, 180, {}, "totag9");
  EXPECT_TRUE(response.is_response());
  EXPECT_EQ(response.status_code(), 180);
  EXPECT_EQ(response.reason_phrase(), "Ringing");
  std::string wire = response.Serialize();
  SipMessage parsed = Parse(wire);
  EXPECT_EQ(parsed.ViaCount(), 3u);
  SmallVector<std::string_view, 8> vias;
  ASSERT_TRUE(parsed.Values(HeaderId::kVia, &vias));
  EXPECT_EQ(vias[0], "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds");
  EXPECT_EQ(vias[2], "SIP/2.0/UDP p2.example.com;branch=z9hG4bKp2");
  EXPECT_EQ(parsed.FindHeader(HeaderId::kTo), "Bob <sip:bob@biloxi.com>;tag=totag9");
  EXPECT_EQ(parsed.FromTag(), "1928301774");
  EXPECT_EQ(parsed.CallId(), "a84b4c76e66710@pc33.atlanta.com");
  EXPECT_EQ(parsed.FindHeader(HeaderId::kCSeq), "314159 INVITE");
  EXPECT_FALSE(parsed.HasHeader(HeaderId::kContact));
  EXPECT_FALSE(parsed.HasHeader(HeaderId::kMaxForwards));
  EXPECT_FALSE(parsed.HasHeader(HeaderId::kTimestamp));
  EXPECT_EQ(parsed.FindHeader(HeaderId::kContentLength), "0");
  EXPECT_TRUE(parsed.body().empty());
}

TEST(BuildResponseTest, TryingHasNoTagButTimestamp) {
  SipMessage request = Parse(kInvite);
  SipMessage trying = BuildResponse(request, 100, {}, "totag9");
  EXPECT_EQ(trying.ToTag(), "");
  EXPECT_EQ(trying.FindHeader(HeaderId::kTimestamp), "54");
  EXPECT_TRUE(trying.Serialize().starts_with("SIP/2.0 100 Trying\r\n"));
}

TEST(BuildResponseTest, KeepsAnExistingToTag) {
  std::string in_dialog(kInvite);
  in_dialog.replace(in_dialog.find("Bob <sip:bob@biloxi.com>"), 24, "Bob <sip:bob@biloxi.com>;tag=a6c85cf");
  SipMessage request = Parse(in_dialog);
  SipMessage ok = BuildResponse(request, 200, "Fine", "other");
  EXPECT_EQ(ok.ToTag(), "a6c85cf");
  EXPECT_EQ(ok.reason_phrase(), "Fine");
}

TEST(BuildResponseTest, ExtraHeadersAndBody) {
  SipMessage request = Parse(kInvite);
  SipMessage ok = BuildResponse(request, 200, {}, "t");
  ok.AddHeader(HeaderId::kContact, "<sip:bob@192.0.2.4>");
  ok.AddHeader("Supported", "timer");
  ok.SetBody("application/sdp", "v=0\r\no=bob\r\n");
  SipMessage parsed = Parse(ok.Serialize());
  EXPECT_EQ(parsed.FindHeader(HeaderId::kContact), "<sip:bob@192.0.2.4>");
  EXPECT_EQ(parsed.FindHeader("supported"), "timer");
  EXPECT_EQ(parsed.ContentType(), "application/sdp");
  EXPECT_EQ(parsed.body(), "v=0\r\no=bob\r\n");
  EXPECT_EQ(parsed.FindHeader(HeaderId::kContentLength), "12");
}

TEST(SerializeTest, RoundTripKeepsOrderAndFixesContentLength) {
  SipMessage m = Parse(kInvite);
  std::string wire = m.Serialize();
  EXPECT_EQ(wire.size(), m.SerializedSize());
  EXPECT_EQ(wire, kInvite);  // already canonical
  // Compact and odd spacing come out normalized; the folded value is one line.
  SipMessage odd = Parse(
      "OPTIONS sip:a@b SIP/2.0\r\nv:   SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:a@b>;tag=1\r\n"
      "t:\r\n  <sip:c@d>\r\ni: x\r\nCSeq : 2 OPTIONS\r\n\r\n");
  EXPECT_EQ(odd.Serialize(),
            "OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:a@b>;tag=1\r\n"
            "t: <sip:c@d>\r\ni: x\r\nCSeq: 2 OPTIONS\r\nContent-Length: 0\r\n\r\n");
  std::string appended = "prefix";
  odd.AppendTo(&appended);
  EXPECT_EQ(appended, "prefix" + odd.Serialize());
}

TEST(MutationTest, ProxyStyleEdits) {
  SipMessage m = Parse(kInvite);
  m.PrependHeader(HeaderId::kVia, "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKproxy");
  m.SetHeader(HeaderId::kMaxForwards, "69");
  m.PrependHeader(HeaderId::kRecordRoute, "<sip:proxy.example.com;lr>");
  m.SetRequestUri("sip:bob@192.0.2.4:5060");
  SipMessage parsed = Parse(m.Serialize());
  EXPECT_EQ(parsed.request_uri(), "sip:bob@192.0.2.4:5060");
  EXPECT_EQ(parsed.TopVia()->host, "proxy.example.com");
  EXPECT_EQ(parsed.ViaCount(), 4u);
  EXPECT_EQ(parsed.MaxForwards(), 69);
  EXPECT_EQ(parsed.header(0).id, HeaderId::kRecordRoute);
  EXPECT_EQ(parsed.body(), "v=0\n");
}

TEST(MutationTest, RemoveTopValue) {
  SipMessage m = Parse(kInvite);
  ASSERT_TRUE(m.RemoveTopValue(HeaderId::kVia));
  EXPECT_EQ(m.TopVia()->host, "p1.example.com");
  EXPECT_EQ(m.ViaCount(), 2u);
  ASSERT_TRUE(m.RemoveTopValue(HeaderId::kVia));
  EXPECT_EQ(m.TopVia()->host, "p2.example.com");
  EXPECT_EQ(m.CountHeaders(HeaderId::kVia), 1u);
  ASSERT_TRUE(m.RemoveTopValue(HeaderId::kVia));
  EXPECT_FALSE(m.HasHeader(HeaderId::kVia));
  EXPECT_FALSE(m.RemoveTopValue(HeaderId::kVia));
}

TEST(MutationTest, RemoveAndInsert) {
  SipMessage m = Parse(kInvite);
  size_t before = m.header_count();
  EXPECT_EQ(m.RemoveHeaders(HeaderId::kVia), 2u);
  EXPECT_EQ(m.header_count(), before - 2);
  m.InsertHeader(1, "X-Test", "1");
  EXPECT_EQ(m.header(1).name, "X-Test");
  m.RemoveHeader(1);
  EXPECT_FALSE(m.FindHeader("X-Test").has_value());
  m.SetBody("", "");
  EXPECT_FALSE(m.HasHeader(HeaderId::kContentType));
  EXPECT_EQ(m.FindHeader(HeaderId::kContentLength), "0");
}

TEST(MutationTest, ValuesCannotInjectHeaders) {
  SipMessage m = Parse(kInvite);
  m.AddHeader("Subject", "hi\r\nVia: SIP/2.0/UDP evil");
  SipMessage parsed = Parse(m.Serialize());
  EXPECT_EQ(parsed.ViaCount(), 3u);
  EXPECT_EQ(parsed.FindHeader(HeaderId::kSubject), "hi  Via: SIP/2.0/UDP evil");
}

TEST(MessageTest, CopiesOwnTheirBuffer) {
  SipMessage copy;
  {
    SipMessage original = Parse(kInvite);
    copy = original;
    original.SetRequestUri("sip:changed@example.com");
  }
  EXPECT_EQ(copy.request_uri(), "sip:bob@biloxi.com");
  EXPECT_EQ(copy.CallId(), "a84b4c76e66710@pc33.atlanta.com");
  SipMessage moved = std::move(copy);
  EXPECT_EQ(moved.FromTag(), "1928301774");
}

TEST(RequestBuilderTest, BuildsAParsableRequest) {
  SipMessage notify = RequestBuilder("NOTIFY", "sip:alice@192.0.2.7:5060")
                          .Via("UDP", "10.0.0.1:5060", "z9hG4bKn1", /*rport=*/true)
                          .From("sip:bob@example.com", "ft")
                          .To("\"Alice\" <sip:alice@example.com>", "tt")
                          .CallId("cid-1")
                          .CSeq(7)
                          .Contact("sip:bob@10.0.0.1:5060")
                          .Header(HeaderId::kEvent, "presence")
                          .Header("Subscription-State", "active;expires=3600")
                          .Body("application/pidf+xml", "<presence/>")
                          .Build();
  std::string wire = notify.Serialize();
  SipMessage parsed = Parse(wire);
  EXPECT_EQ(parsed.method_id(), Method::kNotify);
  EXPECT_EQ(parsed.request_uri(), "sip:alice@192.0.2.7:5060");
  EXPECT_EQ(parsed.TopVia()->branch, "z9hG4bKn1");
  EXPECT_TRUE(parsed.TopVia()->has_rport);
  EXPECT_EQ(parsed.FindHeader(HeaderId::kFrom), "<sip:bob@example.com>;tag=ft");
  EXPECT_EQ(parsed.To()->DisplayName(), "Alice");
  EXPECT_EQ(parsed.ToTag(), "tt");
  EXPECT_EQ(parsed.CSeq()->number, 7u);
  EXPECT_EQ(parsed.CSeq()->method, "NOTIFY");
  EXPECT_EQ(parsed.MaxForwards(), 70);
  EXPECT_EQ(parsed.FindHeader(HeaderId::kEvent), "presence");
  EXPECT_EQ(parsed.body(), "<presence/>");
  EXPECT_EQ(parsed.ContentType(), "application/pidf+xml");
}

TEST(RequestBuilderTest, ExplicitMaxForwards) {
  SipMessage m = RequestBuilder("OPTIONS", "sip:a@b").MaxForwards(0).Build();
  EXPECT_EQ(m.CountHeaders(HeaderId::kMaxForwards), 1u);
  EXPECT_EQ(m.MaxForwards(), 0);
}

TEST(NamesTest, HeaderIdsAndMethods) {
  EXPECT_EQ(HeaderIdFromName("v"), HeaderId::kVia);
  EXPECT_EQ(HeaderIdFromName("VIA"), HeaderId::kVia);
  EXPECT_EQ(HeaderIdFromName("call-id"), HeaderId::kCallId);
  EXPECT_EQ(HeaderIdFromName("www-authenticate"), HeaderId::kWwwAuthenticate);
  EXPECT_EQ(HeaderIdFromName("X"), HeaderId::kSessionExpires);
  EXPECT_EQ(HeaderIdFromName("y"), HeaderId::kUnknown);
  EXPECT_EQ(HeaderIdFromName("C%6Fntact"), HeaderId::kUnknown);
  EXPECT_EQ(HeaderIdFromName(""), HeaderId::kUnknown);
  EXPECT_EQ(CanonicalHeaderName(HeaderId::kCSeq), "CSeq");
  EXPECT_EQ(CanonicalHeaderName(HeaderId::kUnknown), "");
  EXPECT_TRUE(IsListHeader(HeaderId::kContact));
  EXPECT_FALSE(IsListHeader(HeaderId::kDate));
  EXPECT_EQ(MethodFromName("INVITE"), Method::kInvite);
  EXPECT_EQ(MethodFromName("invite"), Method::kUnknown);
  EXPECT_EQ(MethodName(Method::kSubscribe), "SUBSCRIBE");
  EXPECT_EQ(DefaultReasonPhrase(416), "Unsupported URI Scheme");
  EXPECT_EQ(DefaultReasonPhrase(499), "Client Error");
}

}  // namespace
}  // namespace tandem::sip
