// The SIP message parser (RFC 3261 section 7 and 25, tested against the RFC 4475
// torture messages) and the stream framer that finds message boundaries on TCP/TLS.
//
// ParseMessage() takes ownership of the received bytes and returns a SipMessage
// whose headers point into them, or a ParseError that says what answer the
// transport owes: 400/505/501/513 for a request it could recognize (build it with
// BuildErrorResponse), or status 0 — drop silently — for bad responses (RFC 3261
// never answers a response) and for garbage. Parsing accepts folded lines, bare-LF
// line ends, compact header names and unusual-but-legal white space, and checks the
// headers every element relies on (Via, From, To, Call-ID, CSeq, Max-Forwards,
// Content-Length, Contact, Date) so later layers can use them without re-checking.
// Semantics above the parser (unknown Require options -> 420, unknown scheme ->
// 416 via CheckRequestUriScheme, Max-Forwards 0 -> 483...) are the upper layers' job.
//
// Thread-safety: all functions are stateless and safe from any thread. A
// StreamFramer belongs to one connection and is not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"
#include "sip/message.h"

namespace tandem::sip {

enum class Framing : uint8_t {
  kDatagram,  // UDP: the body is the rest of the datagram, cut to Content-Length
  kStream,    // TCP/TLS: Content-Length is required and delimits the message
};

struct ParseOptions {
  size_t max_message_size = 64 * 1024;  // larger messages fail with kMessageTooLarge (513)
  size_t max_header_count = 256;        // more header lines fail with kTooManyHeaders (400)
  Framing framing = Framing::kDatagram;
  bool check_date = true;               // reject a Date that is not an RFC 1123 GMT date
};

enum class ParseErrorKind : uint8_t {
  kGarbage,              // not recognizable as a SIP message
  kMalformedStartLine,   // request line or status line
  kVersionNotSupported,  // SIP/x.y other than 2.0
  kMalformedRequestUri,
  kMalformedHeader,      // a header line, or the value of a header the core checks
  kMissingHeader,        // Via, From, To, Call-ID or CSeq absent
  kDuplicateHeader,      // a single-valued header (From, To, Call-ID, CSeq, Max-Forwards) repeated
  kCSeqMethodMismatch,   // CSeq method differs from the request method
  kBadContentLength,     // malformed, repeated, missing on a stream, or beyond the data
  kMessageTooLarge,
  kTooManyHeaders,
};

std::string_view ParseErrorKindName(ParseErrorKind kind);

struct ParseError {
  ParseErrorKind kind = ParseErrorKind::kGarbage;
  // The response the transport should send: 400, 505, 501 (unknown method with a
  // CSeq mismatch, RFC 4475 mismatch02), 513. 0 means drop without answering.
  int status_code = 0;
  std::string reason;  // one sentence for logs and the Warning header

  bool ShouldRespond() const { return status_code != 0; }
  Error ToError() const;
};

template <typename T>
using ParseResult = std::expected<T, ParseError>;

// Parses one message. `buffer` holds exactly one datagram (kDatagram) or one frame
// found by StreamFramer (kStream); the message keeps it. Trailing bytes after
// Content-Length are discarded (RFC 4475 dblreq); leading CRLFs are skipped.
ParseResult<SipMessage> ParseMessage(std::string buffer, const ParseOptions& options = {});

// ---- stream framing (TCP/TLS) ----

enum class FrameKind : uint8_t {
  kNeedMore,       // not enough bytes yet; read more and call again
  kMessage,        // a whole message of `length` bytes is at the front
  kKeepAlivePing,  // RFC 5626 "\r\n\r\n" ping at the front: consume `length`, answer "\r\n"
  kKeepAlivePong,  // a lone CRLF (pong or stray line end): consume `length`
};

struct Frame {
  FrameKind kind = FrameKind::kNeedMore;
  size_t length = 0;  // bytes to consume from the front (0 for kNeedMore)
};

// Finds the first message in `buffered` (all bytes received and not yet consumed).
// Errors — missing or malformed Content-Length, headers or message over the size
// limit — mean the connection cannot be resynchronized: answer if ShouldRespond()
// and close it.
ParseResult<Frame> FindMessageFrame(std::string_view buffered, const ParseOptions& options = {});

// FindMessageFrame that remembers how far it has looked for the end of the header
// block, so a peer trickling bytes costs linear, not quadratic, time. After a frame
// other than kNeedMore, the caller drops `length` bytes from the front of its
// buffer before calling Next() again.
class StreamFramer {
 public:
  explicit StreamFramer(const ParseOptions& options = {}) : options_(options) {
    options_.framing = Framing::kStream;
  }
  ParseResult<Frame> Next(std::string_view buffered);
  const ParseOptions& options() const { return options_; }

 private:
  ParseOptions options_;
  size_t scanned_ = 0;  // bytes already known not to end the header block
};

// ---- answering malformed requests ----

// Builds the wire bytes of the response a rejected request is owed, copying Via,
// From, To, Call-ID and CSeq from `raw` as leniently as possible (adding `to_tag` to
// a To without tag) and a Warning with the reason. nullopt when the error says drop
// or `raw` has no Via to answer along.
std::optional<std::string> BuildErrorResponse(std::string_view raw, const ParseError& error,
                                              std::string_view to_tag = {});

// RFC 4475 3.3.2/3.3.3: the status (416 Unsupported URI Scheme) for a request whose
// Request-URI scheme is not sip, sips or tel; 0 when the scheme is served.
int CheckRequestUriScheme(const SipMessage& request);

}  // namespace tandem::sip
