#include "sip/parser.h"

#include <cstring>

#include "sip/header_values.h"
#include "sip/syntax.h"

namespace tandem::sip {
namespace {

enum class StartKind { kGarbage, kRequest, kResponse };

StartKind ClassifyStartLine(std::string_view line) {
  if (StartsWithIgnoreCase(line, "SIP/")) return StartKind::kResponse;
  size_t sp = line.find(' ');
  if (sp == std::string_view::npos || sp == 0 || !IsToken(line.substr(0, sp))) {
    return StartKind::kGarbage;
  }
  return StartKind::kRequest;
}

enum class VersionCheck { kOk, kMalformed, kUnsupported };

VersionCheck CheckVersion(std::string_view v) {
  if (!StartsWithIgnoreCase(v, "SIP/")) return VersionCheck::kMalformed;
  std::string_view rest = v.substr(4);
  size_t dot = rest.find('.');
  if (dot == std::string_view::npos) return VersionCheck::kMalformed;
  std::string_view major = rest.substr(0, dot);
  std::string_view minor = rest.substr(dot + 1);
  for (std::string_view part : {major, minor}) {
    if (part.empty()) return VersionCheck::kMalformed;
    for (char c : part) {
      if (!IsDigit(c)) return VersionCheck::kMalformed;
    }
  }
  return (major == "2" && minor == "0") ? VersionCheck::kOk : VersionCheck::kUnsupported;
}

size_t SkipLeadingLineEnds(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size() && (s[pos] == '\r' || s[pos] == '\n')) ++pos;
  return pos;
}

// The first line of `s` from `pos`, without its line end.
std::string_view FirstLine(std::string_view s, size_t pos) {
  size_t lf = s.find('\n', pos);
  std::string_view line = s.substr(pos, lf == std::string_view::npos ? std::string_view::npos : lf - pos);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// Where the header block ends: the index just past the empty line, or npos when
// the block is not complete. `*resume` is where a later search may restart.
size_t FindHeaderEnd(std::string_view s, size_t from, size_t* resume) {
  size_t pos = from;
  while (true) {
    const void* hit = pos < s.size() ? std::memchr(s.data() + pos, '\n', s.size() - pos) : nullptr;
    if (hit == nullptr) {
      *resume = s.size();
      return std::string_view::npos;
    }
    size_t i = static_cast<size_t>(static_cast<const char*>(hit) - s.data());
    if (i + 1 >= s.size()) {
      *resume = i;
      return std::string_view::npos;
    }
    if (s[i + 1] == '\n') return i + 2;
    if (s[i + 1] == '\r') {
      if (i + 2 >= s.size()) {
        *resume = i;
        return std::string_view::npos;
      }
      if (s[i + 2] == '\n') return i + 3;
    }
    pos = i + 1;
  }
}

// One header line of a block, with continuation lines, found leniently.
struct RawHeader {
  std::string_view name;
  size_t value_begin = 0;  // offsets into the block
  size_t value_end = 0;    // may include folded line ends
};

// Calls fn(RawHeader) for each header of the block [header_start, end); returns
// false if fn does.
template <typename Fn>
void ForEachRawHeader(std::string_view s, size_t header_start, size_t end, Fn&& fn) {
  size_t pos = header_start;
  RawHeader current;
  bool have_current = false;
  while (pos < end) {
    size_t lf = s.find('\n', pos);
    if (lf == std::string_view::npos || lf >= end) lf = end;
    size_t content_end = lf;
    if (content_end > pos && s[content_end - 1] == '\r') --content_end;
    if (content_end == pos) break;  // empty line: end of headers
    if (IsWsp(s[pos])) {
      if (have_current) current.value_end = content_end;
    } else {
      if (have_current && !fn(current)) return;
      have_current = false;
      size_t colon = s.find(':', pos);
      if (colon != std::string_view::npos && colon < content_end) {
        current.name = TrimLws(s.substr(pos, colon - pos));
        current.value_begin = colon + 1;
        current.value_end = content_end;
        have_current = true;
      }
    }
    pos = lf + 1;
  }
  if (have_current) fn(current);
}

ParseError Fail(ParseErrorKind kind, int status, std::string reason) {
  return ParseError{kind, status, std::move(reason)};
}

ParseResult<Frame> FindFrame(std::string_view b, const ParseOptions& options, size_t* scanned) {
  if (b.empty()) return Frame{};
  // Keep-alives (RFC 5626 section 4.4.1) and stray line ends between messages.
  if (b[0] == '\n') return Frame{FrameKind::kKeepAlivePong, 1};
  if (b[0] == '\r') {
    if (b.size() < 2) return Frame{};
    if (b[1] != '\n') return std::unexpected(Fail(ParseErrorKind::kGarbage, 0, "bare CR in stream"));
    if (b.size() < 4) {
      if (b.size() == 3 && b[2] != '\r') return Frame{FrameKind::kKeepAlivePong, 2};
      return Frame{};  // may still become a "\r\n\r\n" ping
    }
    if (b[2] == '\r' && b[3] == '\n') return Frame{FrameKind::kKeepAlivePing, 4};
    return Frame{FrameKind::kKeepAlivePong, 2};
  }
  bool is_request = ClassifyStartLine(FirstLine(b, 0)) == StartKind::kRequest;
  auto status = [&](int code) { return is_request ? code : 0; };
  size_t header_end = FindHeaderEnd(b, *scanned, scanned);
  if (header_end == std::string_view::npos) {
    if (b.size() > options.max_message_size) {
      return std::unexpected(Fail(ParseErrorKind::kMessageTooLarge, status(513),
                                  "header block exceeds the maximum message size"));
    }
    return Frame{};
  }
  // Find Content-Length (or "l") in the header block.
  std::optional<uint32_t> content_length;
  std::optional<ParseError> error;
  size_t first_header = b.find('\n') + 1;
  ForEachRawHeader(b, first_header, header_end, [&](const RawHeader& h) {
    if (HeaderIdFromName(h.name) != HeaderId::kContentLength) return true;
    std::optional<uint32_t> value =
        ParseUint32(TrimLws(b.substr(h.value_begin, h.value_end - h.value_begin)));
    if (!value) {
      error = Fail(ParseErrorKind::kBadContentLength, status(400), "malformed Content-Length");
      return false;
    }
    if (content_length) {
      error = Fail(ParseErrorKind::kBadContentLength, status(400), "more than one Content-Length");
      return false;
    }
    content_length = value;
    return true;
  });
  if (error) return std::unexpected(std::move(*error));
  if (!content_length) {
    return std::unexpected(Fail(ParseErrorKind::kBadContentLength, status(400),
                                "Content-Length is required on stream transports"));
  }
  uint64_t total = static_cast<uint64_t>(header_end) + *content_length;
  if (total > options.max_message_size) {
    return std::unexpected(Fail(ParseErrorKind::kMessageTooLarge, status(513),
                                "message exceeds the maximum message size"));
  }
  // Resume the search just before the header end next time.
  *scanned = header_end >= 3 ? header_end - 3 : 0;
  if (b.size() < total) return Frame{};
  *scanned = 0;
  return Frame{FrameKind::kMessage, static_cast<size_t>(total)};
}

}  // namespace

std::string_view ParseErrorKindName(ParseErrorKind kind) {
  switch (kind) {
    case ParseErrorKind::kGarbage: return "garbage";
    case ParseErrorKind::kMalformedStartLine: return "malformed start line";
    case ParseErrorKind::kVersionNotSupported: return "version not supported";
    case ParseErrorKind::kMalformedRequestUri: return "malformed Request-URI";
    case ParseErrorKind::kMalformedHeader: return "malformed header";
    case ParseErrorKind::kMissingHeader: return "missing header";
    case ParseErrorKind::kDuplicateHeader: return "duplicate header";
    case ParseErrorKind::kCSeqMethodMismatch: return "CSeq method mismatch";
    case ParseErrorKind::kBadContentLength: return "bad Content-Length";
    case ParseErrorKind::kMessageTooLarge: return "message too large";
    case ParseErrorKind::kTooManyHeaders: return "too many headers";
  }
  return "unknown";
}

Error ParseError::ToError() const {
  std::string message = "SIP parse error (";
  message.append(ParseErrorKindName(kind)).append("): ").append(reason);
  return Error{ErrorCode::kInvalidArgument, std::move(message)};
}

// Fills a SipMessage from its own buffer. A friend of SipMessage.
class MessageParser {
 public:
  static ParseResult<SipMessage> Parse(std::string&& buffer, const ParseOptions& options);

 private:
  MessageParser(SipMessage* m, const ParseOptions& options) : m_(m), options_(options) {}
  ParseResult<void> Run();
  ParseResult<void> ParseRequestLine(std::string_view line, size_t offset);
  ParseResult<void> ParseStatusLine(std::string_view line, size_t offset);
  ParseResult<void> SplitHeaders(size_t pos, size_t* body_start);
  ParseResult<void> CheckHeaders(std::optional<uint32_t>* content_length);
  int StatusFor(int code) const { return is_request_ ? code : 0; }
  std::unexpected<ParseError> Reject(ParseErrorKind kind, int code, std::string reason) const {
    return std::unexpected(Fail(kind, StatusFor(code), std::move(reason)));
  }
  SipMessage::Span SpanOf(size_t offset, size_t length) const {
    return SipMessage::Span{static_cast<uint32_t>(offset), static_cast<uint32_t>(length)};
  }

  SipMessage* m_;
  const ParseOptions& options_;
  bool is_request_ = false;
};

ParseResult<SipMessage> MessageParser::Parse(std::string&& buffer, const ParseOptions& options) {
  // One named result, so the message is built in place (NRVO), never moved.
  ParseResult<SipMessage> result(std::in_place);
  result->buffer_ = std::move(buffer);
  MessageParser parser(&*result, options);
  ParseResult<void> status = parser.Run();
  if (!status) result = std::unexpected(std::move(status.error()));
  return result;
}

ParseResult<void> MessageParser::Run() {
  std::string_view s = m_->buffer_;
  size_t start = SkipLeadingLineEnds(s);
  if (start == s.size()) return std::unexpected(Fail(ParseErrorKind::kGarbage, 0, "empty message"));
  std::string_view line = FirstLine(s, start);
  StartKind kind = ClassifyStartLine(line);
  if (kind == StartKind::kGarbage) {
    return std::unexpected(Fail(ParseErrorKind::kGarbage, 0, "not a SIP request or response"));
  }
  is_request_ = kind == StartKind::kRequest;
  if (s.size() > options_.max_message_size || s.size() > UINT32_MAX) {
    return Reject(ParseErrorKind::kMessageTooLarge, 513, "message exceeds the maximum message size");
  }
  if (line.find('\r') != std::string_view::npos) {
    return Reject(ParseErrorKind::kMalformedStartLine, 400, "bare CR in the start line");
  }
  ParseResult<void> r = is_request_ ? ParseRequestLine(line, start) : ParseStatusLine(line, start);
  if (!r) return r;

  size_t after_line = start + line.size();
  if (after_line < s.size() && s[after_line] == '\r') ++after_line;
  if (after_line >= s.size()) return Reject(ParseErrorKind::kMalformedHeader, 400, "message has no headers");
  ++after_line;  // the LF
  size_t body_start = 0;
  r = SplitHeaders(after_line, &body_start);
  if (!r) return r;
  std::optional<uint32_t> content_length;
  r = CheckHeaders(&content_length);
  if (!r) return r;

  size_t available = m_->buffer_.size() - body_start;
  size_t body_size = available;
  if (content_length) {
    if (*content_length > available) {
      return Reject(ParseErrorKind::kBadContentLength, 400,
                   "Content-Length " + std::to_string(*content_length) + " exceeds the " +
                       std::to_string(available) + " body bytes received");
    }
    body_size = *content_length;
  } else if (options_.framing == Framing::kStream) {
    return Reject(ParseErrorKind::kBadContentLength, 400, "Content-Length is required on stream transports");
  }
  m_->body_ = SpanOf(body_start, body_size);
  m_->buffer_.resize(body_start + body_size);  // drop what follows the message (dblreq)
  m_->raw_size_ = m_->buffer_.size();
  return {};
}

ParseResult<void> MessageParser::ParseRequestLine(std::string_view line, size_t offset) {
  // Method SP Request-URI SP SIP-Version: exactly one SP each (RFC 4475 lwsstart, trws).
  size_t sp1 = line.find(' ');
  size_t sp2 = line.rfind(' ');
  if (sp2 == sp1) return Reject(ParseErrorKind::kMalformedStartLine, 400, "request line lacks a SIP version");
  std::string_view method = line.substr(0, sp1);
  std::string_view uri = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  switch (CheckVersion(version)) {
    case VersionCheck::kOk:
      break;
    case VersionCheck::kMalformed:
      return Reject(ParseErrorKind::kMalformedStartLine, 400, "malformed request line");
    case VersionCheck::kUnsupported:
      return Reject(ParseErrorKind::kVersionNotSupported, 505, "SIP version is not 2.0");
  }
  if (uri.empty() || ContainsAnyOf(uri, ' ', '\t')) {
    return Reject(ParseErrorKind::kMalformedStartLine, 400, "white space in the Request-URI");
  }
  Uri parsed;
  if (const char* error = TryParseUri(uri, &parsed)) {
    return Reject(ParseErrorKind::kMalformedRequestUri, 400, std::string("malformed Request-URI: ") + error);
  }
  if (parsed.is_sip() && !parsed.headers.empty()) {
    // RFC 3261 19.1.1: headers are not allowed in a Request-URI (RFC 4475 escruri).
    return Reject(ParseErrorKind::kMalformedRequestUri, 400, "Request-URI carries URI headers");
  }
  m_->is_request_ = true;
  m_->method_ = SpanOf(offset, method.size());
  m_->method_id_ = MethodFromName(method);
  m_->request_uri_ = SpanOf(offset + sp1 + 1, uri.size());
  return {};
}

ParseResult<void> MessageParser::ParseStatusLine(std::string_view line, size_t offset) {
  size_t sp = line.find(' ');
  std::string_view version = line.substr(0, sp);
  if (CheckVersion(version) != VersionCheck::kOk) {
    return Reject(ParseErrorKind::kVersionNotSupported, 0, "response with a SIP version other than 2.0");
  }
  if (sp == std::string_view::npos) return Reject(ParseErrorKind::kMalformedStartLine, 0, "status line lacks a code");
  std::string_view rest = line.substr(sp + 1);
  size_t code_end = 0;
  while (code_end < rest.size() && IsDigit(rest[code_end])) ++code_end;
  if (code_end != 3 || (code_end < rest.size() && rest[code_end] != ' ')) {
    return Reject(ParseErrorKind::kMalformedStartLine, 0, "status code is not three digits");
  }
  int code = (rest[0] - '0') * 100 + (rest[1] - '0') * 10 + (rest[2] - '0');
  if (code < 100 || code > 699) {
    return Reject(ParseErrorKind::kMalformedStartLine, 0, "status code outside 100..699");
  }
  m_->is_request_ = false;
  m_->status_code_ = code;
  size_t reason_offset = code_end < rest.size() ? code_end + 1 : code_end;
  m_->reason_ = SpanOf(offset + sp + 1 + reason_offset, rest.size() - reason_offset);
  return {};
}

ParseResult<void> MessageParser::SplitHeaders(size_t pos, size_t* body_start) {
  std::string& buffer = m_->buffer_;
  char* d = buffer.data();
  size_t n = buffer.size();
  auto& headers = m_->headers_;
  size_t previous_content_end = 0;  // end of the last line of the previous header
  while (true) {
    if (pos >= n) {
      // No empty line: tolerated for datagrams (the body is then empty).
      if (options_.framing == Framing::kStream) {
        return Reject(ParseErrorKind::kMalformedHeader, 400, "header block is not terminated");
      }
      *body_start = n;
      break;
    }
    // The line ends at CRLF, at a bare LF (tolerated), or at the end of the data.
    size_t content_end = static_cast<size_t>(FindLineBreak(d + pos, d + n) - d);
    size_t line_end = content_end;  // index of the LF (or n)
    if (content_end < n && d[content_end] == '\r') {
      if (content_end + 1 < n && d[content_end + 1] != '\n') {
        return Reject(ParseErrorKind::kMalformedHeader, 400, "bare CR in a header line");
      }
      line_end = content_end + 1 < n ? content_end + 1 : n;
    }
    if (content_end == pos) {  // the empty line
      *body_start = line_end < n ? line_end + 1 : n;
      break;
    }
    if (IsWsp(d[pos])) {
      // Folded continuation (LWS): join it to the previous value with spaces.
      if (headers.empty()) {
        return Reject(ParseErrorKind::kMalformedHeader, 400, "continuation line before the first header");
      }
      std::memset(d + previous_content_end, ' ', pos - previous_content_end);
      SipMessage::Entry& e = headers.back();
      e.value.length = static_cast<uint32_t>(content_end - e.value.offset);
    } else {
      size_t name_end = pos;
      while (name_end < content_end && IsClass(d[name_end], kToken)) ++name_end;
      size_t colon = name_end;
      while (colon < content_end && IsWsp(d[colon])) ++colon;
      if (name_end == pos || colon >= content_end || d[colon] != ':') {
        return Reject(ParseErrorKind::kMalformedHeader, 400, "malformed header line");
      }
      if (headers.size() >= options_.max_header_count) {
        return Reject(ParseErrorKind::kTooManyHeaders, 400, "too many header fields");
      }
      SipMessage::Entry e;
      e.name = SpanOf(pos, name_end - pos);
      e.value = SpanOf(colon + 1, content_end - colon - 1);
      e.id = HeaderIdFromName(std::string_view(d + pos, name_end - pos));
      headers.push_back(e);
    }
    previous_content_end = content_end;
    pos = line_end + 1;
  }
  // Trim the values (folds are spaces by now).
  for (SipMessage::Entry& e : headers) {
    uint32_t b = e.value.offset;
    uint32_t end = e.value.offset + e.value.length;
    while (b < end && IsWsp(d[b])) ++b;
    while (end > b && IsWsp(d[end - 1])) --end;
    e.value = SipMessage::Span{b, end - b};
  }
  return {};
}

ParseResult<void> MessageParser::CheckHeaders(std::optional<uint32_t>* content_length) {
  int from = 0, to = 0, call_id = 0, cseq_count = 0, max_forwards = 0, lengths = 0, vias = 0;
  std::optional<CSeqHeader> cseq;
  bool contact_star = false;
  // Reused scratch values: the checks below allocate nothing unless they fail.
  ViaHeader via;
  NameAddr address;
  auto bad = [&](std::string_view name, std::string_view what) {
    std::string reason(name);
    reason.append(": ").append(what);
    return Reject(ParseErrorKind::kMalformedHeader, 400, std::move(reason));
  };
  for (const SipMessage::Entry& e : m_->headers_) {
    std::string_view v = m_->View(e.value);
    switch (e.id) {
      case HeaderId::kVia: {
        CommaListIterator it(v);
        std::string_view element;
        bool any = false;
        while (it.Next(&element)) {
          any = true;
          if (const char* error = TryParseVia(element, &via)) return bad("Via", error);
        }
        if (!it.ok() || !any) return bad("Via", "malformed or empty list");
        ++vias;
        break;
      }
      case HeaderId::kFrom:
      case HeaderId::kTo: {
        bool is_from = e.id == HeaderId::kFrom;
        ++(is_from ? from : to);
        if (const char* error = TryParseNameAddr(v, &address)) return bad(is_from ? "From" : "To", error);
        break;
      }
      case HeaderId::kCallId:
        ++call_id;
        if (!IsValidCallId(v)) return bad("Call-ID", "not word[@word]");
        break;
      case HeaderId::kCSeq: {
        ++cseq_count;
        Result<CSeqHeader> parsed = ParseCSeq(v);
        if (!parsed) return bad("CSeq", parsed.error().message);
        cseq = *parsed;
        break;
      }
      case HeaderId::kMaxForwards: {
        ++max_forwards;
        std::optional<uint32_t> hops = ParseUint32(v);
        if (!hops || *hops > 255) return bad("Max-Forwards", "must be 0..255");
        break;
      }
      case HeaderId::kContentLength: {
        ++lengths;
        std::optional<uint32_t> length = ParseUint32(v);
        if (!length) return Reject(ParseErrorKind::kBadContentLength, 400, "malformed Content-Length");
        if (lengths > 1) {
          // RFC 4475 mcl01: conflicting lengths make the framing unknowable.
          return Reject(ParseErrorKind::kBadContentLength, 400, "more than one Content-Length");
        }
        *content_length = *length;
        break;
      }
      case HeaderId::kContact:
        if (const char* error = ValidateContacts(v, &contact_star)) return bad("Contact", error);
        break;
      case HeaderId::kDate:
        if (options_.check_date && !IsValidSipDate(v)) return bad("Date", "not an RFC 1123 GMT date");
        break;
      default:
        break;
    }
  }
  if (vias == 0) return Reject(ParseErrorKind::kMissingHeader, 400, "missing Via");
  if (from == 0) return Reject(ParseErrorKind::kMissingHeader, 400, "missing From");
  if (to == 0) return Reject(ParseErrorKind::kMissingHeader, 400, "missing To");
  if (call_id == 0) return Reject(ParseErrorKind::kMissingHeader, 400, "missing Call-ID");
  if (cseq_count == 0) return Reject(ParseErrorKind::kMissingHeader, 400, "missing CSeq");
  if (from > 1 || to > 1 || call_id > 1 || cseq_count > 1 || max_forwards > 1) {
    // RFC 4475 multi01.
    return Reject(ParseErrorKind::kDuplicateHeader, 400,
                 "more than one From, To, Call-ID, CSeq or Max-Forwards");
  }
  if (is_request_ && cseq->method != m_->method()) {
    // RFC 4475 mismatch01 (400) and mismatch02 (501 preferred for an unknown method).
    bool known = m_->method_id() != Method::kUnknown;
    return Reject(ParseErrorKind::kCSeqMethodMismatch, known ? 400 : 501,
                 "CSeq method does not match the request method");
  }
  return {};
}

ParseResult<SipMessage> ParseMessage(std::string buffer, const ParseOptions& options) {
  return MessageParser::Parse(std::move(buffer), options);
}

ParseResult<Frame> FindMessageFrame(std::string_view buffered, const ParseOptions& options) {
  size_t scanned = 0;
  return FindFrame(buffered, options, &scanned);
}

ParseResult<Frame> StreamFramer::Next(std::string_view buffered) {
  if (scanned_ > buffered.size()) scanned_ = 0;
  ParseResult<Frame> frame = FindFrame(buffered, options_, &scanned_);
  if (!frame || frame->kind != FrameKind::kNeedMore) scanned_ = 0;
  return frame;
}

std::optional<std::string> BuildErrorResponse(std::string_view raw, const ParseError& error,
                                              std::string_view to_tag) {
  if (!error.ShouldRespond()) return std::nullopt;
  size_t start = SkipLeadingLineEnds(raw);
  if (start >= raw.size() || ClassifyStartLine(FirstLine(raw, start)) != StartKind::kRequest) {
    return std::nullopt;
  }
  size_t first_header = raw.find('\n', start);
  if (first_header == std::string_view::npos) return std::nullopt;
  ++first_header;
  size_t resume = 0;
  size_t end = FindHeaderEnd(raw, start, &resume);
  if (end == std::string_view::npos) end = raw.size();

  std::string vias;
  std::string from, to, call_id, cseq;
  auto clean = [&](const RawHeader& h) {
    std::string value(TrimLws(raw.substr(h.value_begin, h.value_end - h.value_begin)));
    for (char& c : value) {
      if (c == '\r' || c == '\n') c = ' ';
    }
    return value;
  };
  ForEachRawHeader(raw, first_header, end, [&](const RawHeader& h) {
    if (!IsToken(h.name)) return true;
    switch (HeaderIdFromName(h.name)) {
      case HeaderId::kVia:
        vias.append("Via: ").append(clean(h)).append("\r\n");
        break;
      case HeaderId::kFrom:
        if (from.empty()) from = clean(h);
        break;
      case HeaderId::kTo:
        if (to.empty()) to = clean(h);
        break;
      case HeaderId::kCallId:
        if (call_id.empty()) call_id = clean(h);
        break;
      case HeaderId::kCSeq:
        if (cseq.empty()) cseq = clean(h);
        break;
      default:
        break;
    }
    return true;
  });
  if (vias.empty()) return std::nullopt;

  std::string out;
  out.reserve(vias.size() + from.size() + to.size() + call_id.size() + cseq.size() + error.reason.size() + 160);
  out.append("SIP/2.0 ").append(std::to_string(error.status_code)).append(" ");
  out.append(DefaultReasonPhrase(error.status_code)).append("\r\n");
  out.append(vias);
  if (!from.empty()) out.append("From: ").append(from).append("\r\n");
  if (!to.empty()) {
    out.append("To: ").append(to);
    if (!to_tag.empty() && to.find(";tag=") == std::string::npos &&
        to.find("; tag") == std::string::npos) {
      out.append(";tag=").append(to_tag);
    }
    out.append("\r\n");
  }
  if (!call_id.empty()) out.append("Call-ID: ").append(call_id).append("\r\n");
  if (!cseq.empty()) out.append("CSeq: ").append(cseq).append("\r\n");
  std::string warning;
  for (char c : error.reason) warning.push_back(c == '"' || c == '\\' ? '\'' : c);
  out.append("Warning: 399 tandem \"").append(warning).append("\"\r\n");
  out.append("Content-Length: 0\r\n\r\n");
  return out;
}

int CheckRequestUriScheme(const SipMessage& request) {
  if (!request.is_request()) return 0;
  Result<Uri> uri = request.RequestUri();
  if (!uri) return 400;
  return uri->scheme == UriScheme::kOther ? 416 : 0;
}

}  // namespace tandem::sip
