#include "sip/parser.h"

#include <gtest/gtest.h>

#include <string>

namespace tandem::sip {
namespace {

constexpr std::string_view kRegister =
    "REGISTER sip:registrar.biloxi.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7;rport\r\n"
    "Max-Forwards: 70\r\n"
    "To: Bob <sip:bob@biloxi.com>\r\n"
    "From: Bob <sip:bob@biloxi.com>;tag=456248\r\n"
    "Call-ID: 843817637684230@998sdasdh09\r\n"
    "CSeq: 1826 REGISTER\r\n"
    "Contact: <sip:bob@192.0.2.4>;expires=7200\r\n"
    "Expires: 7200\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

SipMessage MustParse(std::string_view text, const ParseOptions& options = {}) {
  ParseResult<SipMessage> m = ParseMessage(std::string(text), options);
  EXPECT_TRUE(m.has_value()) << (m ? "" : m.error().reason);
  return m ? std::move(*m) : SipMessage();
}

ParseError MustFail(std::string_view text, const ParseOptions& options = {}) {
  ParseResult<SipMessage> m = ParseMessage(std::string(text), options);
  EXPECT_FALSE(m.has_value()) << text;
  return m ? ParseError{} : m.error();
}

TEST(ParserTest, TypicalRegister) {
  SipMessage m = MustParse(kRegister);
  EXPECT_TRUE(m.is_request());
  EXPECT_EQ(m.method(), "REGISTER");
  EXPECT_EQ(m.method_id(), Method::kRegister);
  EXPECT_EQ(m.request_uri(), "sip:registrar.biloxi.com");
  EXPECT_EQ(m.header_count(), 9u);
  EXPECT_EQ(m.header(0).name, "Via");
  EXPECT_EQ(m.header(0).id, HeaderId::kVia);
  EXPECT_EQ(m.CallId(), "843817637684230@998sdasdh09");
  EXPECT_EQ(m.CSeq()->number, 1826u);
  EXPECT_EQ(m.TopVia()->branch, "z9hG4bKnashds7");
  EXPECT_TRUE(m.TopVia()->has_rport);
  EXPECT_EQ(m.FromTag(), "456248");
  EXPECT_EQ(m.ToTag(), "");
  EXPECT_EQ(m.MaxForwards(), 70);
  EXPECT_EQ(**m.Expires(), 7200u);
  Result<ContactList> contacts = m.Contacts();
  ASSERT_TRUE(contacts.has_value());
  EXPECT_EQ(**ContactExpires(contacts->contacts[0]), 7200u);
  EXPECT_TRUE(m.body().empty());
  EXPECT_EQ(m.raw(), kRegister);
}

TEST(ParserTest, HeaderLookupIsCaseInsensitiveAndKnowsCompactForms) {
  SipMessage m = MustParse(
      "INVITE sip:bob@biloxi.com SIP/2.0\r\n"
      "v: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
      "f: <sip:a@b>;tag=1\r\n"
      "t: <sip:c@d>\r\n"
      "i: call-1\r\n"
      "CSEQ: 1 INVITE\r\n"
      "m: <sip:a@10.0.0.1>\r\n"
      "e: gzip\r\n"
      "c: application/sdp\r\n"
      "s: hello\r\n"
      "k: timer\r\n"
      "o: presence\r\n"
      "u: dialog\r\n"
      "r: <sip:x@y>\r\n"
      "b: <sip:z@y>\r\n"
      "x: 1800\r\n"
      "X-Custom: yes\r\n"
      "l: 4\r\n"
      "\r\n"
      "abcd");
  EXPECT_EQ(m.FindHeader("Via"), "SIP/2.0/UDP h;branch=z9hG4bK1");
  EXPECT_EQ(m.FindHeader("from"), "<sip:a@b>;tag=1");
  EXPECT_EQ(m.FindHeader("TO"), "<sip:c@d>");
  EXPECT_EQ(m.FindHeader("Call-Id"), "call-1");
  EXPECT_EQ(m.FindHeader(HeaderId::kCSeq), "1 INVITE");
  EXPECT_EQ(m.FindHeader("Contact"), "<sip:a@10.0.0.1>");
  EXPECT_EQ(m.FindHeader("Content-Encoding"), "gzip");
  EXPECT_EQ(m.FindHeader("content-type"), "application/sdp");
  EXPECT_EQ(m.FindHeader("Subject"), "hello");
  EXPECT_EQ(m.FindHeader("Supported"), "timer");
  EXPECT_EQ(m.FindHeader("Event"), "presence");
  EXPECT_EQ(m.FindHeader("Allow-Events"), "dialog");
  EXPECT_EQ(m.FindHeader("Refer-To"), "<sip:x@y>");
  EXPECT_EQ(m.FindHeader("Referred-By"), "<sip:z@y>");
  EXPECT_EQ(m.FindHeader("Session-Expires"), "1800");
  EXPECT_EQ(m.FindHeader("x-custom"), "yes");
  EXPECT_EQ(m.FindHeader("Content-Length"), "4");
  EXPECT_FALSE(m.FindHeader("Route").has_value());
  EXPECT_EQ(m.body(), "abcd");
}

TEST(ParserTest, FoldedLinesAndBareLf) {
  SipMessage m = MustParse(
      "OPTIONS sip:a@b SIP/2.0\n"
      "Via: SIP/2.0/UDP h;branch=z9hG4bK1,\n"
      "  SIP/2.0/TCP g;branch=z9hG4bK2\n"
      "From: <sip:a@b>\n"
      "\t;tag=7\n"
      "To: <sip:c@d>\n"
      "Call-ID: x\n"
      "CSeq:\n"
      " 5\n"
      " OPTIONS\n"
      "\n");
  EXPECT_EQ(m.ViaCount(), 2u);
  EXPECT_EQ(m.FromTag(), "7");
  EXPECT_EQ(m.CSeq()->number, 5u);
  EXPECT_EQ(m.CSeq()->method, "OPTIONS");
  EXPECT_EQ(m.FindHeader(HeaderId::kVia)->find('\n'), std::string_view::npos);
}

TEST(ParserTest, MultiValuedHeadersOverSeveralLines) {
  SipMessage m = MustParse(
      "INVITE sip:a@b SIP/2.0\r\n"
      "Via: SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/UDP h2;branch=z9hG4bK2\r\n"
      "Via: SIP/2.0/UDP h3;branch=z9hG4bK3\r\n"
      "Route: <sip:p1;lr>, \"Quoted, with comma\" <sip:p2;lr>\r\n"
      "Route: <sip:p3;lr>\r\n"
      "From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n");
  SmallVector<std::string_view, 8> vias;
  ASSERT_TRUE(m.Values(HeaderId::kVia, &vias));
  ASSERT_EQ(vias.size(), 3u);
  EXPECT_EQ(vias[1], "SIP/2.0/UDP h2;branch=z9hG4bK2");
  SmallVector<std::string_view, 8> routes;
  ASSERT_TRUE(m.Values("route", &routes));
  ASSERT_EQ(routes.size(), 3u);
  EXPECT_EQ(routes[1], "\"Quoted, with comma\" <sip:p2;lr>");
}

TEST(ParserTest, LeadingLineEndsAreSkipped) {
  SipMessage m = MustParse(std::string("\r\n\r\n") + std::string(kRegister));
  EXPECT_EQ(m.method(), "REGISTER");
}

TEST(ParserTest, DatagramContentLengthFraming) {
  std::string head =
      "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
      "To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n";
  // No Content-Length: the rest of the datagram.
  EXPECT_EQ(MustParse(head + "\r\nhello").body(), "hello");
  // Smaller: cut.
  SipMessage cut = MustParse(head + "Content-Length: 3\r\n\r\nhello");
  EXPECT_EQ(cut.body(), "hel");
  EXPECT_EQ(cut.raw().size(), head.size() + 24u);
  // Larger: 400.
  ParseError e = MustFail(head + "Content-Length: 6\r\n\r\nhello");
  EXPECT_EQ(e.kind, ParseErrorKind::kBadContentLength);
  EXPECT_EQ(e.status_code, 400);
  // Stream framing requires it.
  ParseOptions stream;
  stream.framing = Framing::kStream;
  EXPECT_EQ(MustFail(head + "\r\nhello", stream).kind, ParseErrorKind::kBadContentLength);
  EXPECT_EQ(MustParse(head + "Content-Length: 5\r\n\r\nhello", stream).body(), "hello");
  // No empty line at all is tolerated on datagrams only.
  EXPECT_TRUE(MustParse(head).body().empty());
  EXPECT_EQ(MustFail(head, stream).status_code, 400);
}

TEST(ParserTest, SizeAndHeaderCountLimits) {
  ParseOptions small;
  small.max_message_size = 200;
  ParseError big = MustFail(kRegister, small);
  EXPECT_EQ(big.kind, ParseErrorKind::kMessageTooLarge);
  EXPECT_EQ(big.status_code, 513);

  std::string many(kRegister.substr(0, kRegister.size() - 2));
  for (int i = 0; i < 300; ++i) many += "X-H: " + std::to_string(i) + "\r\n";
  many += "\r\n";
  ParseError count = MustFail(many);
  EXPECT_EQ(count.kind, ParseErrorKind::kTooManyHeaders);
  EXPECT_EQ(count.status_code, 400);
  ParseOptions roomy;
  roomy.max_header_count = 400;
  SipMessage m = MustParse(many, roomy);  // well past the inline capacity
  EXPECT_EQ(m.header_count(), 309u);
  EXPECT_EQ(m.FindHeader("X-H"), "0");

  std::string response = "SIP/2.0 200 OK\r\n" + std::string(300, 'x');
  EXPECT_EQ(MustFail(response, small).status_code, 0);  // responses are never answered
}

TEST(ParserTest, GarbageIsDropped) {
  for (std::string_view text : {std::string_view(""), std::string_view("\r\n\r\n"),
                                std::string_view("hello"), std::string_view("\x01\x02\x03 \x04"),
                                std::string_view("GET\r\n\r\n"), std::string_view(" INVITE sip:a@b SIP/2.0\r\n")}) {
    ParseError e = MustFail(text);
    EXPECT_EQ(e.kind, ParseErrorKind::kGarbage) << text;
    EXPECT_FALSE(e.ShouldRespond());
  }
}

TEST(ParserTest, MalformedRequestsAre400) {
  std::string tail = "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\n"
                     "Call-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
  struct Case {
    std::string text;
    ParseErrorKind kind;
    int status;
  };
  const Case cases[] = {
      {"INVITE sip:a@b SIP/2.0\r\nVia SIP/2.0/UDP h\r\n" + tail, ParseErrorKind::kMalformedHeader, 400},
      {"INVITE sip:a@b SIP/2.0\r\n : x\r\n" + tail, ParseErrorKind::kMalformedHeader, 400},
      {"INVITE sip:a@b SIP/2.0\r\nX: a\rb\r\n" + tail, ParseErrorKind::kMalformedHeader, 400},
      {"INVITE sip:a@b SIP/2.0\r\nBad Name: x\r\n" + tail, ParseErrorKind::kMalformedHeader, 400},
      {"INVITE sip:a@b SIP/3.0\r\n" + tail, ParseErrorKind::kVersionNotSupported, 505},
      {"INVITE sip:a@b HTTP/1.1\r\n" + tail, ParseErrorKind::kMalformedStartLine, 400},
      {"INVITE sip:a@b\r\n" + tail, ParseErrorKind::kMalformedStartLine, 400},
      {"INVITE sip:a@b?x=y SIP/2.0\r\n" + tail, ParseErrorKind::kMalformedRequestUri, 400},
      {"INVITE sip: SIP/2.0\r\n" + tail, ParseErrorKind::kMalformedRequestUri, 400},
      {"BYE sip:a@b SIP/2.0\r\n" + tail, ParseErrorKind::kCSeqMethodMismatch, 400},
      {"INVITE sip:a@b SIP/2.0\r\nMax-Forwards: 256\r\n" + tail, ParseErrorKind::kMalformedHeader, 400},
      {"INVITE sip:a@b SIP/2.0\r\nCall-ID: d\r\n" + tail, ParseErrorKind::kDuplicateHeader, 400},
      {"INVITE sip:a@b SIP/2.0\r\nContent-Length: abc\r\n" + tail, ParseErrorKind::kBadContentLength, 400},
      {"INVITE sip:a@b SIP/2.0\r\nContact: *, <sip:a@b>\r\n" + tail, ParseErrorKind::kMalformedHeader, 400},
      {"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h,\r\n" + tail, ParseErrorKind::kMalformedHeader, 400},
      {"INVITE sip:a@b SIP/2.0\r\nCall-ID: c\r\n\r\n", ParseErrorKind::kMissingHeader, 400},
  };
  for (const Case& c : cases) {
    ParseError e = MustFail(c.text);
    EXPECT_EQ(e.kind, c.kind) << c.text << " -> " << e.reason;
    EXPECT_EQ(e.status_code, c.status) << c.text;
    EXPECT_FALSE(e.reason.empty());
  }
}

TEST(ParserTest, Responses) {
  SipMessage m = MustParse(
      "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1;received=192.0.2.1\r\n"
      "From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n");
  EXPECT_TRUE(m.is_response());
  EXPECT_EQ(m.status_code(), 180);
  EXPECT_EQ(m.reason_phrase(), "Ringing");
  EXPECT_EQ(m.ToTag(), "2");
  EXPECT_EQ(m.TopVia()->received, "192.0.2.1");
  // A response's CSeq method need not match anything.
  for (std::string_view bad : {"SIP/2.0 99 Low\r\n", "SIP/2.0 700 High\r\n", "SIP/2.0 2000 X\r\n",
                               "SIP/2.0 20 X\r\n", "SIP/3.0 200 OK\r\n", "SIP/2.0\r\n"}) {
    ParseError e = MustFail(std::string(bad) + "Via: SIP/2.0/UDP h\r\n\r\n");
    EXPECT_EQ(e.status_code, 0) << bad;
  }
}

TEST(ParserTest, ErrorConvertsToTandemError) {
  ParseError e = MustFail("INVITE sip:a@b SIP/7.0\r\n\r\n");
  Error error = e.ToError();
  EXPECT_EQ(error.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(error.message.find("version"), std::string::npos);
}

TEST(ParserTest, BuildErrorResponse) {
  std::string bad =
      "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP h2;branch=z9hG4bK2\r\n"
      "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: c\r\nCSeq: 1 BYE\r\n\r\n";
  ParseError e = MustFail(bad);
  std::optional<std::string> answer = BuildErrorResponse(bad, e, "srv1");
  ASSERT_TRUE(answer.has_value());
  SipMessage r = MustParse(*answer);
  EXPECT_EQ(r.status_code(), 400);
  EXPECT_EQ(r.ViaCount(), 2u);
  EXPECT_EQ(r.ToTag(), "srv1");
  EXPECT_EQ(r.FromTag(), "1");
  EXPECT_EQ(r.CallId(), "c");
  EXPECT_TRUE(r.FindHeader(HeaderId::kWarning).has_value());

  std::string no_via = "INVITE sip:a@b SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n";
  EXPECT_FALSE(BuildErrorResponse(no_via, MustFail(no_via)).has_value());
  EXPECT_FALSE(BuildErrorResponse("garbage", MustFail("garbage")).has_value());
}

TEST(ParserTest, RequestUriScheme) {
  std::string tail = "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\n"
                     "Call-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
  EXPECT_EQ(CheckRequestUriScheme(MustParse("OPTIONS sip:a@b SIP/2.0\r\n" + tail)), 0);
  EXPECT_EQ(CheckRequestUriScheme(MustParse("OPTIONS sips:a@b SIP/2.0\r\n" + tail)), 0);
  EXPECT_EQ(CheckRequestUriScheme(MustParse("OPTIONS tel:+15551234 SIP/2.0\r\n" + tail)), 0);
  EXPECT_EQ(CheckRequestUriScheme(MustParse("OPTIONS im:alice@example.com SIP/2.0\r\n" + tail)), 416);
}

// ---- stream framing ----

TEST(FramerTest, WholeMessageAndPipelining) {
  std::string two = std::string(kRegister) + std::string(kRegister);
  ParseResult<Frame> f = FindMessageFrame(two);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->kind, FrameKind::kMessage);
  EXPECT_EQ(f->length, kRegister.size());
}

TEST(FramerTest, BodyAndByteByByteArrival) {
  std::string msg =
      "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
      "To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\nl: 5\r\n\r\nhello";
  StreamFramer framer;
  for (size_t n = 0; n < msg.size(); ++n) {
    ParseResult<Frame> f = framer.Next(std::string_view(msg).substr(0, n));
    ASSERT_TRUE(f.has_value()) << n;
    ASSERT_EQ(f->kind, FrameKind::kNeedMore) << n;
  }
  ParseResult<Frame> f = framer.Next(msg);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->kind, FrameKind::kMessage);
  EXPECT_EQ(f->length, msg.size());
  ParseOptions stream;
  stream.framing = Framing::kStream;
  EXPECT_EQ(MustParse(msg.substr(0, f->length), stream).body(), "hello");
}

TEST(FramerTest, KeepAlives) {
  ParseResult<Frame> ping = FindMessageFrame("\r\n\r\nINVITE");
  ASSERT_TRUE(ping.has_value());
  EXPECT_EQ(ping->kind, FrameKind::kKeepAlivePing);
  EXPECT_EQ(ping->length, 4u);
  ParseResult<Frame> pong = FindMessageFrame("\r\nINVITE");
  ASSERT_TRUE(pong.has_value());
  EXPECT_EQ(pong->kind, FrameKind::kKeepAlivePong);
  EXPECT_EQ(pong->length, 2u);
  EXPECT_EQ(FindMessageFrame("\r\n")->kind, FrameKind::kNeedMore);
  EXPECT_EQ(FindMessageFrame("\r\n\r")->kind, FrameKind::kNeedMore);
  EXPECT_EQ(FindMessageFrame("")->kind, FrameKind::kNeedMore);
  EXPECT_FALSE(FindMessageFrame("\rX").has_value());
}

TEST(FramerTest, Errors) {
  std::string head = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n";
  ParseResult<Frame> missing = FindMessageFrame(head + "\r\n");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().kind, ParseErrorKind::kBadContentLength);
  EXPECT_EQ(missing.error().status_code, 400);
  EXPECT_FALSE(FindMessageFrame(head + "Content-Length: -1\r\n\r\n").has_value());
  EXPECT_FALSE(FindMessageFrame(head + "Content-Length: 1\r\nl: 1\r\n\r\n").has_value());
  ParseResult<Frame> huge = FindMessageFrame(head + "Content-Length: 99999999\r\n\r\n");
  ASSERT_FALSE(huge.has_value());
  EXPECT_EQ(huge.error().status_code, 513);
  ParseOptions small;
  small.max_message_size = 100;
  ParseResult<Frame> endless = FindMessageFrame(head + std::string(200, 'x'), small);
  ASSERT_FALSE(endless.has_value());
  EXPECT_EQ(endless.error().kind, ParseErrorKind::kMessageTooLarge);
  ParseResult<Frame> response = FindMessageFrame("SIP/2.0 200 OK\r\nVia: x\r\n\r\n");
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().status_code, 0);
  // A folded Content-Length still frames.
  ParseResult<Frame> folded = FindMessageFrame(head + "Content-Length:\r\n 2\r\n\r\nab");
  ASSERT_TRUE(folded.has_value());
  EXPECT_EQ(folded->kind, FrameKind::kMessage);
}

}  // namespace
}  // namespace tandem::sip
