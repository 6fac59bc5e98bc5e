#include "transport/transport_util.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "sip/parser.h"

namespace tandem::sip {
namespace {

SipMessage Parse(std::string_view via, std::string_view method = "OPTIONS", std::string_view extra = "") {
  std::string text = fmt::format(
      "{} sip:bob@example.com SIP/2.0\r\n"
      "Via: {}\r\n"
      "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKproxy\r\n"
      "Max-Forwards: 70\r\n"
      "From: <sip:alice@example.com>;tag=ft\r\n"
      "To: <sip:bob@example.com>\r\n"
      "Call-ID: cid@host\r\n"
      "CSeq: 7 {}\r\n"
      "{}"
      "Content-Length: 0\r\n\r\n",
      method, via, method, extra);
  auto message = ParseMessage(text);
  EXPECT_TRUE(message) << message.error().reason;
  return message ? std::move(*message) : SipMessage();
}

TEST(ServerTransactionKeyTest, Rfc3261KeyUsesBranchSentByAndMethod) {
  SipMessage a = Parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc");
  SipMessage b = Parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc", "INFO");
  SipMessage c = Parse("SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKabc");
  EXPECT_EQ(ServerTransactionKey(a, a.method()), ServerTransactionKey(a, "OPTIONS"));
  EXPECT_NE(ServerTransactionKey(a, a.method()), ServerTransactionKey(b, b.method()));
  EXPECT_NE(ServerTransactionKey(a, a.method()), ServerTransactionKey(c, c.method()));
  // An ACK or CANCEL finds its INVITE by asking for the INVITE key.
  SipMessage invite = Parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKinv", "INVITE");
  SipMessage cancel = Parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKinv", "CANCEL");
  EXPECT_EQ(ServerTransactionKey(cancel, "INVITE"), ServerTransactionKey(invite, "INVITE"));
  EXPECT_NE(ServerTransactionKey(cancel, "CANCEL"), ServerTransactionKey(invite, "INVITE"));
}

TEST(ServerTransactionKeyTest, Rfc2543KeyUsesDialogFields) {
  SipMessage a = Parse("SIP/2.0/UDP 10.0.0.1:5060");
  SipMessage same = Parse("SIP/2.0/UDP 10.0.0.1:5060");
  SipMessage other_via = Parse("SIP/2.0/UDP 10.0.0.9:5060");
  ASSERT_TRUE(ServerTransactionKey(a, "OPTIONS"));
  EXPECT_EQ(ServerTransactionKey(a, "OPTIONS"), ServerTransactionKey(same, "OPTIONS"));
  EXPECT_NE(ServerTransactionKey(a, "OPTIONS"), ServerTransactionKey(other_via, "OPTIONS"));
  // A bare magic cookie is not an RFC 3261 branch.
  SipMessage bare = Parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK");
  EXPECT_EQ(ServerTransactionKey(bare, "OPTIONS")->front(), '2');
}

TEST(StampTopViaTest, RportGetsReceivedAndPort) {
  SipMessage m = Parse("SIP/2.0/UDP 192.0.2.1:5999;branch=z9hG4bKx;rport;received=1.1.1.1");
  ASSERT_TRUE(StampTopVia(&m, "127.0.0.1", 40000));
  auto via = m.TopVia();
  ASSERT_TRUE(via);
  EXPECT_EQ(via->host, "192.0.2.1");
  EXPECT_EQ(via->port, 5999);
  EXPECT_EQ(via->branch, "z9hG4bKx");
  EXPECT_EQ(via->received, "127.0.0.1");
  ASSERT_TRUE(via->rport);
  EXPECT_EQ(*via->rport, 40000);
  EXPECT_EQ(m.ViaCount(), 2u);
  SipMessage response = BuildResponse(m, 200);
  EXPECT_NE(response.Serialize().find("Via: SIP/2.0/UDP 192.0.2.1:5999;branch=z9hG4bKx;received=127.0.0.1;rport=40000\r\n"
                                      "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKproxy\r\n"),
            std::string::npos)
      << response.Serialize();
}

TEST(StampTopViaTest, DifferentHostGetsReceivedOnly) {
  SipMessage m = Parse("SIP/2.0/TCP client.example.com:5060;branch=z9hG4bKy");
  ASSERT_TRUE(StampTopVia(&m, "::1", 40000));
  auto via = m.TopVia();
  ASSERT_TRUE(via);
  EXPECT_EQ(via->received, "::1");
  EXPECT_FALSE(via->has_rport);
}

TEST(StampTopViaTest, SameHostWithoutRportIsLeftAlone) {
  SipMessage m = Parse("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKz");
  EXPECT_FALSE(StampTopVia(&m, "127.0.0.1", 5060));
  SipMessage v6 = Parse("SIP/2.0/UDP [::1]:5060;branch=z9hG4bKz");
  EXPECT_FALSE(StampTopVia(&v6, "::1", 5060));
}

TEST(StampTopViaTest, MultiValueViaLineKeepsTheRest) {
  SipMessage m = Parse("SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKa;rport, SIP/2.0/UDP 192.0.2.8;branch=z9hG4bKb");
  ASSERT_TRUE(StampTopVia(&m, "127.0.0.1", 1234));
  EXPECT_EQ(m.ViaCount(), 3u);
  EXPECT_EQ(m.TopVia()->received, "127.0.0.1");
  SmallVector<std::string_view, 8> vias;
  ASSERT_TRUE(m.Values(HeaderId::kVia, &vias));
  ASSERT_EQ(vias.size(), 3u);
  EXPECT_EQ(vias[1], "SIP/2.0/UDP 192.0.2.8;branch=z9hG4bKb");
}

TEST(AddressTest, ParseAndFormat) {
  EXPECT_TRUE(ParseIpLiteral("127.0.0.1"));
  EXPECT_TRUE(ParseIpLiteral("[::1]"));
  EXPECT_FALSE(ParseIpLiteral("example.com"));
  EXPECT_FALSE(ParseIpLiteral(""));
  EXPECT_EQ(FormatHostPort(*ParseIpLiteral("::1"), 5060), "[::1]:5060");
  EXPECT_EQ(FormatHostPort(*ParseIpLiteral("10.1.2.3"), 5061), "10.1.2.3:5061");
}

}  // namespace
}  // namespace tandem::sip
