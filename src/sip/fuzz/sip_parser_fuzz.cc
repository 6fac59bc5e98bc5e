// libFuzzer target for the SIP parser: feeds arbitrary bytes to the datagram parser,
// the stream framer (whole and in chunks), the URI parser and the header-value
// parsers, exercises every accessor of an accepted message, and checks invariants
// that must hold for any input:
//   - an accepted message serializes to bytes that parse back to the same headers
//     and body;
//   - a response built from an accepted request parses;
//   - a parsed URI equals itself;
//   - a frame found by the framer never exceeds the input or the size limit.
// Built and run by run_fuzz.sh (clang, -fsanitize=fuzzer,address,undefined).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "sip/header_values.h"
#include "sip/message.h"
#include "sip/names.h"
#include "sip/parser.h"
#include "sip/syntax.h"
#include "sip/uri.h"

namespace {

using namespace tandem::sip;
using tandem::Result;

[[noreturn]] void Violation(const char* what) {
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

#define FUZZ_CHECK(cond) \
  do {                   \
    if (!(cond)) Violation(#cond); \
  } while (0)

// Keeps results alive so the optimizer cannot drop the calls.
volatile size_t g_sink = 0;

void Consume(std::string_view s) { g_sink = g_sink + s.size(); }

void ExerciseUri(std::string_view text) {
  Result<Uri> uri = ParseUri(text);
  if (!uri) return;
  FUZZ_CHECK(UriEquals(*uri, *uri));
  Consume(uri->HostAddress());
  Consume(uri->UnescapedUser());
  Consume(uri->Param("transport").value_or(""));
  Consume(uri->Header("subject").value_or(""));
  ForEachUriParam(uri->params, ';', [](std::string_view n, std::string_view v, bool) {
    Consume(n);
    Consume(v);
    return true;
  });
}

void ExerciseValue(std::string_view value) {
  if (Result<ViaHeader> via = ParseVia(value)) {
    Consume(via->branch);
    g_sink = g_sink + IsRfc3261Branch(via->branch);
  }
  if (Result<NameAddr> addr = ParseNameAddr(value)) {
    Consume(addr->DisplayName());
    Consume(addr->Tag());
    FUZZ_CHECK(UriEquals(addr->uri, addr->uri));
  }
  ContactList contacts;
  if (AppendContacts(value, &contacts)) {
    for (const NameAddr& c : contacts.contacts) {
      (void)ContactQ(c);
      (void)ContactExpires(c);
    }
  }
  if (Result<AuthHeader> auth = ParseAuthHeader(value)) {
    for (const AuthParam& p : auth->params) Consume(p.value);
    Consume(auth->Param("nonce").value_or(""));
  }
  (void)ParseCSeq(value);
  (void)ParseDeltaSeconds(value);
  (void)ParseQValue(value);
  g_sink = g_sink + IsValidSipDate(value) + IsValidCallId(value);
  Consume(Unquote(value));
  Consume(Unescape(value));
}

void ExerciseMessage(const SipMessage& m, const ParseOptions& options) {
  // Accessors.
  (void)m.RequestUri();
  (void)m.CSeq();
  (void)m.TopVia();
  (void)m.From();
  (void)m.To();
  (void)m.Contacts();
  (void)m.Expires();
  (void)m.MaxForwards();
  Consume(m.FromTag());
  Consume(m.ToTag());
  Consume(m.CallId());
  g_sink = g_sink + m.ViaCount() + static_cast<size_t>(CheckRequestUriScheme(m));
  for (size_t i = 0; i < m.header_count(); ++i) {
    HeaderField h = m.header(i);
    FUZZ_CHECK(m.FindHeader(h.name).has_value());
    SmallVector<std::string_view, 8> values;
    (void)m.Values(h.name, &values);
    if (i < 8) ExerciseValue(h.value);
  }

  // Round trip: the wire form parses back to the same message.
  std::string wire = m.Serialize();
  FUZZ_CHECK(wire.size() == m.SerializedSize());
  ParseOptions roomy = options;
  roomy.max_message_size = wire.size() + 64;
  roomy.max_header_count = m.header_count() + 2;  // Serialize may add Content-Length
  roomy.framing = Framing::kStream;
  ParseResult<SipMessage> again = ParseMessage(wire, roomy);
  if (!again) {
    std::fprintf(stderr, "re-parse failed: %s\n", again.error().reason.c_str());
    Violation("serialized message parses");
  }
  FUZZ_CHECK(again->is_request() == m.is_request());
  FUZZ_CHECK(again->body() == m.body());
  size_t expected_headers = m.header_count() + (m.HasHeader(HeaderId::kContentLength) ? 0 : 1);
  FUZZ_CHECK(again->header_count() == expected_headers);
  for (size_t i = 0; i < m.header_count(); ++i) {
    FUZZ_CHECK(again->header(i).name == m.header(i).name);
    if (m.header(i).id != HeaderId::kContentLength) FUZZ_CHECK(again->header(i).value == m.header(i).value);
  }
  // Stream framing of the wire form finds exactly it.
  ParseResult<Frame> frame = FindMessageFrame(wire, roomy);
  FUZZ_CHECK(frame.has_value() && frame->kind == FrameKind::kMessage && frame->length == wire.size());

  if (m.is_request()) {
    SipMessage response = BuildResponse(m, 486, {}, "fuzz");
    ParseResult<SipMessage> parsed_response = ParseMessage(response.Serialize(), roomy);
    if (!parsed_response) {
      std::fprintf(stderr, "response parse failed: %s\n", parsed_response.error().reason.c_str());
      Violation("built response parses");
    }
    FUZZ_CHECK(parsed_response->status_code() == 486);
    FUZZ_CHECK(parsed_response->ViaCount() == m.ViaCount());
  }

  // Proxy-style mutation keeps the message parseable.
  SipMessage copy = m;
  copy.RemoveTopValue(HeaderId::kVia);
  copy.PrependHeader(HeaderId::kRecordRoute, "<sip:proxy.example.com;lr>");
  copy.SetBody("text/plain", "x\r\ny");
  FUZZ_CHECK(copy.body() == "x\r\ny");
  Consume(copy.Serialize());
}

void ExerciseStream(std::string_view input) {
  ParseOptions options;
  options.max_message_size = 4096;
  options.framing = Framing::kStream;
  // Whole buffer: consume frames until the framer needs more or fails.
  std::string_view rest = input;
  for (int guard = 0; guard < 64 && !rest.empty(); ++guard) {
    ParseResult<Frame> frame = FindMessageFrame(rest, options);
    if (!frame || frame->kind == FrameKind::kNeedMore) break;
    FUZZ_CHECK(frame->length > 0 && frame->length <= rest.size() && frame->length <= options.max_message_size);
    if (frame->kind == FrameKind::kMessage) {
      (void)ParseMessage(std::string(rest.substr(0, frame->length)), options);
    }
    rest.remove_prefix(frame->length);
  }
  // Trickled in 7-byte steps through a stateful framer: same first frame.
  ParseResult<Frame> whole = FindMessageFrame(input, options);
  StreamFramer framer(options);
  for (size_t n = 0; n <= input.size(); n += 7) {
    ParseResult<Frame> frame = framer.Next(input.substr(0, n));
    if (!frame || frame->kind != FrameKind::kNeedMore) break;
  }
  ParseResult<Frame> last = framer.Next(input);
  FUZZ_CHECK(last.has_value() == whole.has_value());
  if (last && whole) FUZZ_CHECK(last->kind == whole->kind && last->length == whole->length);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);

  ParseOptions options;
  options.max_message_size = 8192;
  options.max_header_count = 64;
  ParseResult<SipMessage> m = ParseMessage(std::string(input), options);
  if (m) {
    ExerciseMessage(*m, options);
  } else {
    const ParseError& e = m.error();
    FUZZ_CHECK(!e.reason.empty());
    FUZZ_CHECK(e.status_code == 0 || (e.status_code >= 400 && e.status_code <= 599));
    Consume(e.ToError().message);
    if (std::optional<std::string> answer = BuildErrorResponse(input, e, "fuzz")) {
      FUZZ_CHECK(answer->starts_with("SIP/2.0 "));
      (void)ParseMessage(*answer, options);
    }
  }

  ExerciseStream(input);

  // The first line as a URI, and each of the first lines as a header value.
  size_t line_end = input.find('\n');
  ExerciseUri(input.substr(0, line_end));
  ExerciseUri(input);
  ExerciseValue(input.substr(0, line_end));
  return 0;
}
