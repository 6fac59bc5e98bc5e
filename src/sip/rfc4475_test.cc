// RFC 4475 torture tests: one test per message file, asserting what the RFC says
// each message must produce. Valid messages (3.1.1) parse and yield the values the
// RFC highlights; invalid ones (3.1.2) are rejected with the suggested status (0 =
// dropped, for responses); 3.2-3.4 parse, and the property an upper layer acts on
// is checked here.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "sip/header_values.h"
#include "sip/message.h"
#include "sip/parser.h"
#include "sip/syntax.h"
#include "sip/uri.h"

namespace tandem::sip {
namespace {

const std::filesystem::path kTortureDir = std::filesystem::path(TANDEM_SHARED_DIR) / "testdata" / "rfc4475";

std::string ReadFile(const std::string& name) {
  std::ifstream in(kTortureDir / name, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---- accessors each message needs ----

ViaHeader ViaAt(const SipMessage& m, size_t index) {
  SmallVector<std::string_view, 8> vias;
  EXPECT_TRUE(m.Values(HeaderId::kVia, &vias));
  EXPECT_LT(index, vias.size());
  if (index >= vias.size()) return {};
  Result<ViaHeader> via = ParseVia(vias[index]);
  EXPECT_TRUE(via.has_value());
  return via.value_or(ViaHeader{});
}

NameAddr Addr(Result<NameAddr> r) {
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
  return r.value_or(NameAddr{});
}

Uri MustUri(std::string_view text) {
  Result<Uri> uri = ParseUri(text);
  EXPECT_TRUE(uri.has_value()) << text;
  return uri.value_or(Uri{});
}

std::string CollapseSpaces(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == ' ' && !out.empty() && out.back() == ' ') continue;
    out.push_back(c);
  }
  return out;
}

// ---- 3.1.1 valid messages ----

void CheckWsinv(const SipMessage& m) {
  EXPECT_EQ(m.method(), "INVITE");
  EXPECT_EQ(m.method_id(), Method::kInvite);
  EXPECT_TRUE(m.RequestUri()->HasParam("unknownparam"));
  NameAddr to = Addr(m.To());
  EXPECT_EQ(to.uri.text, "sip:vivekg@chair-dnrc.example.com");
  EXPECT_EQ(to.Tag(), "1918181833n");
  NameAddr from = Addr(m.From());
  EXPECT_EQ(from.DisplayName(), "J Rosenberg \\\"");
  EXPECT_EQ(from.uri.text, "sip:jdrosen@example.com");
  EXPECT_EQ(from.Tag(), "98asjd8");
  EXPECT_EQ(m.MaxForwards(), 68);
  EXPECT_EQ(m.CallId(), "wsinv.ndaksdj@192.0.2.1");
  EXPECT_EQ(m.CSeq()->number, 9u);
  EXPECT_EQ(m.CSeq()->method, "INVITE");
  ASSERT_EQ(m.ViaCount(), 3u);
  ViaHeader v0 = ViaAt(m, 0);
  EXPECT_EQ(v0.transport, "UDP");
  EXPECT_EQ(v0.host, "192.0.2.2");
  EXPECT_EQ(v0.branch, "390skdjuw");
  ViaHeader v1 = ViaAt(m, 1);
  EXPECT_EQ(v1.transport, "TCP");
  EXPECT_EQ(v1.host, "spindle.example.com");
  EXPECT_EQ(v1.branch, "z9hG4bK9ikj8");
  ViaHeader v2 = ViaAt(m, 2);
  EXPECT_EQ(v2.transport, "UDP");
  EXPECT_EQ(v2.host, "192.168.255.111");
  EXPECT_EQ(v2.branch, "z9hG4bK30239");
  EXPECT_EQ(m.FindHeader(HeaderId::kSubject), "");  // "s :" with an empty value
  EXPECT_EQ(CollapseSpaces(*m.FindHeader("newfangledheader")), "newfangled value continued newfangled value");
  EXPECT_EQ(m.FindHeader("UnknownHeaderWithUnusualValue"), ";;,,;;,;");
  EXPECT_EQ(m.FindHeader(HeaderId::kRoute), "<sip:services.example.com;lr;unknownwith=value;unknown-no-value>");
  Result<ContactList> contacts = m.Contacts();
  ASSERT_TRUE(contacts.has_value());
  ASSERT_EQ(contacts->contacts.size(), 1u);
  const NameAddr& c = contacts->contacts[0];
  EXPECT_EQ(c.DisplayName(), "Quoted string \"\"");
  EXPECT_EQ(c.uri.text, "sip:jdrosen@example.com");
  EXPECT_EQ(c.Param("newparam"), "newvalue");
  EXPECT_EQ(c.Param("secondparam"), "");
  EXPECT_EQ(*ContactQ(c), 330);
  EXPECT_EQ(m.ContentType(), "application/sdp");
  EXPECT_EQ(m.body().size(), 150u);
}

void CheckIntmeth(const SipMessage& m) {
  EXPECT_EQ(m.method(), "!interesting-Method0123456789_*+`.%indeed'~");
  EXPECT_EQ(m.method_id(), Method::kUnknown);
  Result<Uri> ruri = m.RequestUri();
  ASSERT_TRUE(ruri.has_value());
  EXPECT_EQ(ruri->user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
  EXPECT_EQ(ruri->password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
  EXPECT_EQ(ruri->host, "example.com");
  NameAddr to = Addr(m.To());
  EXPECT_EQ(to.DisplayName(), std::string("BEL:\x07 NUL:\0 DEL:\x7f", 17));
  EXPECT_EQ(to.uri.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
  NameAddr from = Addr(m.From());
  EXPECT_EQ(from.DisplayName(), "token1~` token2'+_ token3*%!.-");
  EXPECT_EQ(from.uri.text, "sip:mundane@example.com");
  EXPECT_EQ(from.Param("fromParam''~+*_!.-%"), "\"\xd1\x80\xd0\xb0\xd0\xb1\xd0\xbe\xd1\x82\xd0\xb0\xd1\x8e\xd1\x89\xd0\xb8\xd0\xb9\"");
  EXPECT_EQ(from.Tag(), "_token~1'+`*%!-.");
  EXPECT_EQ(m.CallId(), "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
  EXPECT_EQ(m.CSeq()->number, 139122385u);
  EXPECT_EQ(m.CSeq()->method, m.method());
  EXPECT_EQ(m.MaxForwards(), 255);
  EXPECT_EQ(m.FindHeader("extensionHeader-!.%*+_`'~"), "\xef\xbb\xbf\xe5\xa4\xa7\xe5\x81\x9c\xe9\x9b\xbb");
  EXPECT_EQ(ViaAt(m, 0).branch, "z9hG4bK-.!%66*_+`'~");
  EXPECT_TRUE(m.body().empty());
}

void CheckEsc01(const SipMessage& m) {
  Result<Uri> ruri = m.RequestUri();
  ASSERT_TRUE(ruri.has_value());
  EXPECT_EQ(ruri->UnescapedUser(), "sips:user@example.com");
  EXPECT_EQ(ruri->host, "example.net");
  NameAddr to = Addr(m.To());
  EXPECT_TRUE(UriEquals(to.uri, MustUri("sip:user@example.com")));
  NameAddr from = Addr(m.From());
  EXPECT_EQ(from.uri.UnescapedUser(), "I have spaces");
  EXPECT_EQ(from.Tag(), "938");
  EXPECT_EQ(m.CallId(), "esc01.239409asdfakjkn23onasd0-3234");  // compact "i"
  EXPECT_EQ(m.ContentType(), "application/sdp");                 // compact "C"
  Result<ContactList> contacts = m.Contacts();  // folded onto a continuation line
  ASSERT_TRUE(contacts.has_value());
  ASSERT_EQ(contacts->contacts.size(), 1u);
  const Uri& c = contacts->contacts[0].uri;
  EXPECT_EQ(c.UnescapedUser(), "caller");
  EXPECT_TRUE(c.HasParam("lr"));  // written %6C%72
  ASSERT_TRUE(c.Param("name").has_value());
  EXPECT_EQ(Unescape(*c.Param("name")), "value%41");
  EXPECT_TRUE(UriEquals(c, MustUri("sip:caller@host5.example.net;lr;name=value%25%34%31")));
  EXPECT_EQ(m.body().size(), 150u);
}

void CheckEscnull(const SipMessage& m) {
  EXPECT_EQ(m.method_id(), Method::kRegister);
  EXPECT_EQ(Addr(m.To()).uri.UnescapedUser(), std::string("null-\0-null", 11));
  EXPECT_EQ(Addr(m.From()).uri.UnescapedUser(), std::string("null-\0-null", 11));
  Result<ContactList> contacts = m.Contacts();
  ASSERT_TRUE(contacts.has_value());
  ASSERT_EQ(contacts->contacts.size(), 2u);
  EXPECT_EQ(contacts->contacts[0].uri.UnescapedUser(), std::string("\0", 1));
  EXPECT_EQ(contacts->contacts[1].uri.UnescapedUser(), std::string("\0\0", 2));
  EXPECT_EQ(m.FindHeader(HeaderId::kContentLength), "0");  // "L:0"
  EXPECT_TRUE(m.body().empty());
}

void CheckEsc02(const SipMessage& m) {
  // The method is a token containing '%': it is not REGISTER.
  EXPECT_EQ(m.method(), "RE%47IST%45R");
  EXPECT_EQ(m.method_id(), Method::kUnknown);
  EXPECT_EQ(m.CSeq()->method, "RE%47IST%45R");
  EXPECT_EQ(Addr(m.To()).DisplayName(), "%Z%45");
  EXPECT_EQ(Addr(m.From()).DisplayName(), "%Z%45");
  EXPECT_EQ(ViaAt(m, 0).branch, "z9hG4bK209%fzsnel234");
  // "C%6Fntact" is an extension header, not a Contact.
  Result<ContactList> contacts = m.Contacts();
  ASSERT_TRUE(contacts.has_value());
  ASSERT_EQ(contacts->contacts.size(), 2u);
  EXPECT_EQ(contacts->contacts[0].uri.host, "host1.example.com");
  EXPECT_EQ(contacts->contacts[1].uri.host, "host3.example.com");
  EXPECT_EQ(m.FindHeader("C%6Fntact"), "<sip:alias2@host2.example.com>");
}

void CheckLwsdisp(const SipMessage& m) {
  NameAddr from = Addr(m.From());
  EXPECT_EQ(from.DisplayName(), "caller");
  EXPECT_EQ(from.uri.text, "sip:caller@example.com");
  EXPECT_EQ(from.Tag(), "323");
}

void CheckLongreq(const SipMessage& m) {
  NameAddr to = Addr(m.To());
  std::string name = to.DisplayName();
  EXPECT_TRUE(name.starts_with("I have a user name of extremeextreme"));
  EXPECT_TRUE(name.ends_with("extreme proportion"));
  EXPECT_EQ(to.uri.port, 6000);
  EXPECT_TRUE(to.uri.Param("unknownparam1")->ends_with("longlongvalue"));
  EXPECT_TRUE(to.uri.HasParam(
      "verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglong"
      "ParameterNameWithNoValue"));
  NameAddr from = Addr(m.From());  // compact "F"
  EXPECT_TRUE(from.uri.user.starts_with("amazinglylongcallername"));
  EXPECT_TRUE(from.Tag().starts_with("12982982982982"));
  EXPECT_TRUE(from.Tag().ends_with("2424"));
  EXPECT_TRUE(from.Param("unknownValuelessparamnameparamnameparamnameparamnameparamnameparamnameparamnameparam"
                         "nameparamnameparamname")
                  .has_value());
  EXPECT_TRUE(m.CallId().ends_with("reallylongcallid"));
  ASSERT_EQ(m.ViaCount(), 34u);  // Via, v, V, ViA, "V :", "Via  :" ... all count
  EXPECT_EQ(m.CountHeaders(HeaderId::kVia), 34u);
  EXPECT_EQ(ViaAt(m, 0).host, "sip33.example.com");
  EXPECT_EQ(ViaAt(m, 12).host, "sip21.example.com");  // "v :  SIP/2.0/TCP"
  ViaHeader last = ViaAt(m, 33);
  EXPECT_EQ(last.host, "host.example.com");
  EXPECT_EQ(last.received, "192.0.2.5");
  EXPECT_TRUE(last.branch.starts_with("verylonglong"));
  auto unknown = m.FindHeader(
      "Unknown-LongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLong-Name");
  ASSERT_TRUE(unknown.has_value());
  EXPECT_TRUE(unknown->starts_with("unknown-longlong"));
  EXPECT_EQ(m.body().size(), 150u);  // "l: 150"
}

void CheckDblreq(const SipMessage& m) {
  EXPECT_EQ(m.method_id(), Method::kRegister);
  EXPECT_EQ(m.CallId(), "dblreq.0ha0isndaksdj99sdfafnl3lk233412");  // "I:"
  EXPECT_TRUE(m.body().empty());
  EXPECT_EQ(m.raw().find("INVITE"), std::string_view::npos);  // the second request is dropped
  EXPECT_EQ(m.Serialize().find("INVITE"), std::string::npos);
}

void CheckSemiuri(const SipMessage& m) {
  Result<Uri> ruri = m.RequestUri();
  ASSERT_TRUE(ruri.has_value());
  EXPECT_EQ(ruri->user, "user;par=u%40example.net");
  EXPECT_EQ(ruri->UnescapedUser(), "user;par=u@example.net");
  EXPECT_EQ(ruri->host, "example.com");
  EXPECT_TRUE(ruri->params.empty());
  SmallVector<std::string_view, 8> accept;
  ASSERT_TRUE(m.Values(HeaderId::kAccept, &accept));
  ASSERT_EQ(accept.size(), 6u);
  EXPECT_EQ(accept[0], "application/sdp");
  EXPECT_EQ(accept[2], "multipart/mixed");
  EXPECT_EQ(accept[5], "message/sipfrag");
}

void CheckTransports(const SipMessage& m) {
  ASSERT_EQ(m.ViaCount(), 5u);
  const char* expected[] = {"UDP", "SCTP", "TLS", "UNKNOWN", "TCP"};
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(ViaAt(m, i).transport, expected[i]);
  EXPECT_EQ(m.CallId(), "transports.kijh4akdnaqjkwendsasfdj");
}

void CheckMpart01(const SipMessage& m) {
  EXPECT_EQ(m.method(), "MESSAGE");
  EXPECT_EQ(m.body().size(), 553u);
  EXPECT_TRUE(m.body().starts_with("--7a9cbec02ceef655\r\n"));
  EXPECT_TRUE(m.body().ends_with("--7a9cbec02ceef655--\r\n"));
  EXPECT_EQ(m.ContentType(), "multipart/mixed;boundary=7a9cbec02ceef655");
  ViaHeader via = ViaAt(m, 0);
  EXPECT_TRUE(via.has_rport);
  EXPECT_FALSE(via.rport.has_value());
  EXPECT_EQ(via.port, 5070);
}

void CheckUnreason(const SipMessage& m) {
  EXPECT_TRUE(m.is_response());
  EXPECT_EQ(m.status_code(), 200);
  EXPECT_TRUE(m.reason_phrase().starts_with("= 2**3 * 5**2 \xd0\xbd\xd0\xbe"));
  EXPECT_EQ(m.body().size(), 154u);
}

void CheckNoreason(const SipMessage& m) {
  EXPECT_TRUE(m.is_response());
  EXPECT_EQ(m.status_code(), 100);
  EXPECT_EQ(m.reason_phrase(), "");
}

// ---- 3.2, 3.3, 3.4: parse; the upper layers act on these properties ----

void CheckBadbranch(const SipMessage& m) {
  // Transaction layer: the bare magic cookie is not an RFC 3261 branch, so the
  // element falls back to RFC 2543 matching (or rejects statelessly).
  ViaHeader via = ViaAt(m, 0);
  EXPECT_EQ(via.branch, "z9hG4bK");
  EXPECT_FALSE(IsRfc3261Branch(via.branch));
}

void CheckUnkscm(const SipMessage& m) {
  EXPECT_EQ(m.RequestUri()->scheme, UriScheme::kOther);
  EXPECT_EQ(m.RequestUri()->scheme_text, "nobodyKnowsThisScheme");
}

void CheckNovelsc(const SipMessage& m) {
  EXPECT_EQ(m.RequestUri()->scheme, UriScheme::kOther);
  EXPECT_EQ(m.RequestUri()->scheme_text, "soap.beep");
  EXPECT_EQ(m.RequestUri()->opaque, "//192.0.2.103:3002");
}

void CheckUnksm2(const SipMessage& m) {
  // A registrar answers 400: To must be a SIP or SIPS URI for an AOR.
  NameAddr to = Addr(m.To());
  EXPECT_EQ(to.uri.scheme_text, "isbn");
  EXPECT_FALSE(to.uri.is_sip());
  EXPECT_EQ(Addr(m.From()).uri.scheme_text, "http");
  Result<ContactList> contacts = m.Contacts();
  ASSERT_TRUE(contacts.has_value());
  EXPECT_EQ(contacts->contacts[0].uri.scheme_text, "name");
  EXPECT_EQ(CheckRequestUriScheme(m), 0);
}

void CheckBext01(const SipMessage& m) {
  // 420 Bad Extension is answered by the layer that knows the supported options.
  SmallVector<std::string_view, 8> require;
  ASSERT_TRUE(m.Values(HeaderId::kRequire, &require));
  ASSERT_EQ(require.size(), 2u);
  EXPECT_EQ(require[0], "nothingSupportsThis");
  EXPECT_EQ(require[1], "nothingSupportsThisEither");
  SmallVector<std::string_view, 8> proxy_require;
  ASSERT_TRUE(m.Values(HeaderId::kProxyRequire, &proxy_require));
  ASSERT_EQ(proxy_require.size(), 2u);
  EXPECT_EQ(proxy_require[1], "norDoAnyProxiesSupportThis");
  EXPECT_EQ(ViaAt(m, 0).transport, "TLS");
}

void CheckInvut(const SipMessage& m) {
  // 415 Unsupported Media Type is the UAS's answer.
  EXPECT_EQ(m.ContentType(), "application/unknownformat");
  EXPECT_EQ(m.body().size(), 40u);
  EXPECT_TRUE(m.body().starts_with("<audio>"));
}

void CheckRegaut01(const SipMessage& m) {
  Result<AuthHeader> auth = ParseAuthHeader(*m.FindHeader(HeaderId::kAuthorization));
  ASSERT_TRUE(auth.has_value());
  EXPECT_EQ(auth->scheme, "NoOneKnowsThisScheme");
  EXPECT_EQ(auth->Param("opaque-data"), "here");
  EXPECT_EQ(m.FindHeader(HeaderId::kContentLength), "0");  // "Content-Length:0"
}

void CheckBcast(const SipMessage& m) {
  EXPECT_EQ(m.status_code(), 200);
  ASSERT_EQ(m.ViaCount(), 2u);
  EXPECT_EQ(ViaAt(m, 1).host, "255.255.255.255");
  EXPECT_EQ(ViaAt(m, 1).host_kind, HostKind::kIpv4);
}

void CheckZeromf(const SipMessage& m) {
  // A proxy answers 483 Too Many Hops; an endpoint processes it.
  EXPECT_EQ(m.MaxForwards(), 0);
}

void CheckCparam01(const SipMessage& m) {
  // Without <>, ";unknownparam" is a contact parameter, not a URI parameter.
  Result<ContactList> contacts = m.Contacts();
  ASSERT_TRUE(contacts.has_value());
  const NameAddr& c = contacts->contacts[0];
  EXPECT_FALSE(c.angle_brackets);
  EXPECT_EQ(c.uri.text, "sip:+19725552222@gw1.example.net");
  EXPECT_FALSE(c.uri.HasParam("unknownparam"));
  EXPECT_EQ(c.Param("unknownparam"), "");
}

void CheckCparam02(const SipMessage& m) {
  Result<ContactList> contacts = m.Contacts();
  ASSERT_TRUE(contacts.has_value());
  const NameAddr& c = contacts->contacts[0];
  EXPECT_TRUE(c.angle_brackets);
  EXPECT_TRUE(c.uri.HasParam("unknownparam"));
  EXPECT_FALSE(c.Param("unknownparam").has_value());
}

void CheckRegescrt(const SipMessage& m) {
  // The binding keeps its escaped Route header.
  Result<ContactList> contacts = m.Contacts();  // compact "M"
  ASSERT_TRUE(contacts.has_value());
  const Uri& uri = contacts->contacts[0].uri;
  ASSERT_TRUE(uri.Header("Route").has_value());
  EXPECT_EQ(Unescape(*uri.Header("Route")), "<sip:sip.example.com>");
}

void CheckSdp01(const SipMessage& m) {
  // 406 Not Acceptable is the UAS's answer: it cannot answer in text/nobodyKnowsThis.
  SmallVector<std::string_view, 8> accept;
  ASSERT_TRUE(m.Values(HeaderId::kAccept, &accept));
  ASSERT_EQ(accept.size(), 1u);
  EXPECT_EQ(accept[0], "text/nobodyKnowsThis");
  EXPECT_EQ(m.ContentType(), "application/sdp");
}

void CheckInv2543(const SipMessage& m) {
  ViaHeader via = ViaAt(m, 0);
  EXPECT_TRUE(via.branch.empty());  // RFC 2543 transaction matching
  EXPECT_EQ(via.host, "iftgw.example.com");
  EXPECT_FALSE(m.HasHeader(HeaderId::kMaxForwards));
  EXPECT_EQ(m.FromTag(), "");
  // Without <>, ";user=phone" is a To header parameter, not a URI parameter.
  NameAddr to = Addr(m.To());
  EXPECT_EQ(to.Param("user"), "phone");
  EXPECT_FALSE(to.uri.HasParam("user"));
  EXPECT_EQ(Addr(m.From()).uri.Param("user"), "phone");
  EXPECT_EQ(m.body().size(), 105u);  // no Content-Length: the rest of the datagram
}

// ---- the table ----

enum class Outcome {
  kParses,    // ParseMessage succeeds
  kRejected,  // ParseMessage fails with `status` (0 = dropped)
};

struct TortureCase {
  const char* name;     // file name without ".dat"
  const char* section;  // RFC 4475 section
  Outcome outcome;
  int status;           // kRejected: the ParseError status; kParses: CheckRequestUriScheme()
  ParseErrorKind kind;  // kRejected: why
  const char* reason_has;  // kRejected: a word the reason must contain (names the culprit)
  void (*check)(const SipMessage&);
};

std::ostream& operator<<(std::ostream& os, const TortureCase& c) { return os << c.name; }

const TortureCase kCases[] = {
    // 3.1.1 Valid messages
    {"wsinv", "3.1.1.1", Outcome::kParses, 0, {}, "", CheckWsinv},
    {"intmeth", "3.1.1.2", Outcome::kParses, 0, {}, "", CheckIntmeth},
    {"esc01", "3.1.1.3", Outcome::kParses, 0, {}, "", CheckEsc01},
    {"escnull", "3.1.1.4", Outcome::kParses, 0, {}, "", CheckEscnull},
    {"esc02", "3.1.1.5", Outcome::kParses, 0, {}, "", CheckEsc02},
    {"lwsdisp", "3.1.1.6", Outcome::kParses, 0, {}, "", CheckLwsdisp},
    {"longreq", "3.1.1.7", Outcome::kParses, 0, {}, "", CheckLongreq},
    {"dblreq", "3.1.1.8", Outcome::kParses, 0, {}, "", CheckDblreq},
    {"semiuri", "3.1.1.9", Outcome::kParses, 0, {}, "", CheckSemiuri},
    {"transports", "3.1.1.10", Outcome::kParses, 0, {}, "", CheckTransports},
    {"mpart01", "3.1.1.11", Outcome::kParses, 0, {}, "", CheckMpart01},
    {"unreason", "3.1.1.12", Outcome::kParses, 0, {}, "", CheckUnreason},
    {"noreason", "3.1.1.13", Outcome::kParses, 0, {}, "", CheckNoreason},
    // 3.1.2 Invalid messages
    {"badinv01", "3.1.2.1", Outcome::kRejected, 400, ParseErrorKind::kMalformedHeader, "Via", nullptr},
    {"clerr", "3.1.2.2", Outcome::kRejected, 400, ParseErrorKind::kBadContentLength, "9999", nullptr},
    {"ncl", "3.1.2.3", Outcome::kRejected, 400, ParseErrorKind::kBadContentLength, "Content-Length", nullptr},
    {"scalar02", "3.1.2.4", Outcome::kRejected, 400, ParseErrorKind::kMalformedHeader, "CSeq", nullptr},
    {"scalarlg", "3.1.2.5", Outcome::kRejected, 0, ParseErrorKind::kMalformedHeader, "CSeq", nullptr},  // a response: dropped
    {"quotbal", "3.1.2.6", Outcome::kRejected, 400, ParseErrorKind::kMalformedHeader, "To", nullptr},
    {"ltgtruri", "3.1.2.7", Outcome::kRejected, 400, ParseErrorKind::kMalformedRequestUri, "Request-URI", nullptr},
    {"lwsruri", "3.1.2.8", Outcome::kRejected, 400, ParseErrorKind::kMalformedStartLine, "Request-URI", nullptr},
    {"lwsstart", "3.1.2.9", Outcome::kRejected, 400, ParseErrorKind::kMalformedStartLine, "Request-URI", nullptr},
    {"trws", "3.1.2.10", Outcome::kRejected, 400, ParseErrorKind::kMalformedStartLine, "request line", nullptr},
    {"escruri", "3.1.2.11", Outcome::kRejected, 400, ParseErrorKind::kMalformedRequestUri, "headers", nullptr},
    {"baddate", "3.1.2.12", Outcome::kRejected, 400, ParseErrorKind::kMalformedHeader, "Date", nullptr},
    {"regbadct", "3.1.2.13", Outcome::kRejected, 400, ParseErrorKind::kMalformedHeader, "Contact", nullptr},
    {"badaspec", "3.1.2.14", Outcome::kRejected, 400, ParseErrorKind::kMalformedHeader, "To", nullptr},
    {"baddn", "3.1.2.15", Outcome::kRejected, 400, ParseErrorKind::kMalformedHeader, "From", nullptr},
    {"badvers", "3.1.2.16", Outcome::kRejected, 505, ParseErrorKind::kVersionNotSupported, "version", nullptr},
    {"mismatch01", "3.1.2.17", Outcome::kRejected, 400, ParseErrorKind::kCSeqMethodMismatch, "CSeq", nullptr},
    {"mismatch02", "3.1.2.18", Outcome::kRejected, 501, ParseErrorKind::kCSeqMethodMismatch, "CSeq", nullptr},  // RFC prefers 501 over 400
    {"bigcode", "3.1.2.19", Outcome::kRejected, 0, ParseErrorKind::kMalformedStartLine, "status code", nullptr},       // a response: dropped
    // 3.2 Transaction layer semantics
    {"badbranch", "3.2.1", Outcome::kParses, 0, {}, "", CheckBadbranch},
    // 3.3 Application layer semantics
    {"insuf", "3.3.1", Outcome::kRejected, 400, ParseErrorKind::kMissingHeader, "missing", nullptr},
    {"unkscm", "3.3.2", Outcome::kParses, 416, {}, "", CheckUnkscm},
    {"novelsc", "3.3.3", Outcome::kParses, 416, {}, "", CheckNovelsc},  // a scheme we never serve
    {"unksm2", "3.3.4", Outcome::kParses, 0, {}, "", CheckUnksm2},
    {"bext01", "3.3.5", Outcome::kParses, 0, {}, "", CheckBext01},
    {"invut", "3.3.6", Outcome::kParses, 0, {}, "", CheckInvut},
    {"regaut01", "3.3.7", Outcome::kParses, 0, {}, "", CheckRegaut01},
    {"multi01", "3.3.8", Outcome::kRejected, 400, ParseErrorKind::kDuplicateHeader, "more than one", nullptr},
    {"mcl01", "3.3.9", Outcome::kRejected, 400, ParseErrorKind::kBadContentLength, "more than one", nullptr},
    {"bcast", "3.3.10", Outcome::kParses, 0, {}, "", CheckBcast},
    {"zeromf", "3.3.11", Outcome::kParses, 0, {}, "", CheckZeromf},
    {"cparam01", "3.3.12", Outcome::kParses, 0, {}, "", CheckCparam01},
    {"cparam02", "3.3.13", Outcome::kParses, 0, {}, "", CheckCparam02},
    {"regescrt", "3.3.14", Outcome::kParses, 0, {}, "", CheckRegescrt},
    {"sdp01", "3.3.15", Outcome::kParses, 0, {}, "", CheckSdp01},
    // 3.4 Backward compatibility
    {"inv2543", "3.4.1", Outcome::kParses, 0, {}, "", CheckInv2543},
};

class Rfc4475Test : public ::testing::TestWithParam<TortureCase> {};

TEST_P(Rfc4475Test, BehavesAsTheRfcSays) {
  const TortureCase& c = GetParam();
  std::string bytes = ReadFile(std::string(c.name) + ".dat");
  ASSERT_FALSE(bytes.empty()) << "missing " << c.name << ".dat";
  ParseResult<SipMessage> parsed = ParseMessage(bytes);
  if (c.outcome == Outcome::kRejected) {
    ASSERT_FALSE(parsed.has_value()) << c.name << " (RFC 4475 " << c.section << ") must be rejected";
    EXPECT_EQ(parsed.error().status_code, c.status) << parsed.error().reason;
    EXPECT_EQ(parsed.error().kind, c.kind) << parsed.error().reason;
    EXPECT_NE(parsed.error().reason.find(c.reason_has), std::string::npos) << parsed.error().reason;
    std::optional<std::string> answer = BuildErrorResponse(bytes, parsed.error(), "t0");
    if (c.status == 0) {
      EXPECT_FALSE(answer.has_value());
    } else {
      // Every rejected request here has a Via: the answer goes back, and parses.
      ASSERT_TRUE(answer.has_value());
      ParseResult<SipMessage> response = ParseMessage(*answer);
      if (parsed.error().kind == ParseErrorKind::kMissingHeader ||
          parsed.error().kind == ParseErrorKind::kDuplicateHeader ||
          parsed.error().kind == ParseErrorKind::kMalformedHeader) {
        // The copied headers may be the broken ones; the status line must be right.
        EXPECT_TRUE(answer->starts_with("SIP/2.0 " + std::to_string(c.status) + " "));
      } else {
        ASSERT_TRUE(response.has_value()) << response.error().reason << "\n" << *answer;
        EXPECT_EQ(response->status_code(), c.status);
      }
    }
    return;
  }
  ASSERT_TRUE(parsed.has_value()) << c.name << " (RFC 4475 " << c.section << "): " << parsed.error().reason;
  const SipMessage& m = *parsed;
  EXPECT_EQ(CheckRequestUriScheme(m), c.status);
  c.check(m);

  // Serializing and parsing again keeps every header and the body.
  std::string wire = m.Serialize();
  ParseResult<SipMessage> again = ParseMessage(wire);
  ASSERT_TRUE(again.has_value()) << again.error().reason;
  ASSERT_EQ(again->header_count(), m.header_count() + (m.HasHeader(HeaderId::kContentLength) ? 0 : 1));
  for (size_t i = 0; i < m.header_count(); ++i) {
    EXPECT_EQ(again->header(i).name, m.header(i).name);
    EXPECT_EQ(again->header(i).value, m.header(i).value);
  }
  EXPECT_EQ(again->body(), m.body());
  c.check(*again);

  // Over a stream the framer finds the same message.
  if (m.HasHeader(HeaderId::kContentLength)) {
    ParseResult<Frame> frame = FindMessageFrame(bytes);
    ASSERT_TRUE(frame.has_value()) << frame.error().reason;
    EXPECT_EQ(frame->kind, FrameKind::kMessage);
    EXPECT_EQ(frame->length, m.raw().size());
  }
}

INSTANTIATE_TEST_SUITE_P(Rfc4475, Rfc4475Test, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<TortureCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(Rfc4475Coverage, EveryMessageFileHasACase) {
  std::set<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(kTortureDir)) {
    if (entry.path().extension() == ".dat") files.insert(entry.path().stem().string());
  }
  std::set<std::string> cases;
  for (const TortureCase& c : kCases) cases.insert(c.name);
  EXPECT_EQ(files.size(), 49u);
  EXPECT_EQ(files, cases);
}

}  // namespace
}  // namespace tandem::sip
