// SipMessage: one SIP request or response (RFC 3261 section 7) — start line, header
// fields in wire order, body — together with the byte buffer it was parsed from or
// built into. Header names and values are kept as (offset, length) spans into that
// buffer, so a parsed message costs one buffer and no per-header allocation (up to
// kInlineHeaders headers), and copying or moving a message never leaves a dangling
// view. Accessors return string_views into the buffer: they stay valid until the
// message is modified or destroyed.
//
// Messages come from ParseMessage() (parser.h), BuildResponse(), or RequestBuilder.
// Mutators (AddHeader, RemoveTopValue, SetRequestUri, SetBody...) append new text to
// the buffer and re-point spans; Serialize() writes the wire form, always with a
// Content-Length equal to the body size.
//
// Thread-safety: a SipMessage is a value. Concurrent const access is safe; mutation
// needs external synchronization. Not thread-affine.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"
#include "sip/header_values.h"
#include "sip/names.h"
#include "sip/small_vector.h"
#include "sip/uri.h"

namespace tandem::sip {

// One header field as seen by callers: views into the message buffer.
struct HeaderField {
  std::string_view name;   // as written ("v", "VIA", "Via")
  std::string_view value;  // trimmed; folded lines joined with spaces
  HeaderId id = HeaderId::kUnknown;
};

class SipMessage {
 public:
  static constexpr size_t kInlineHeaders = 32;

  SipMessage() = default;  // an empty response with status 0; use the factories below

  // A request "METHOD uri SIP/2.0" with no headers. Values are copied.
  static SipMessage NewRequest(std::string_view method, std::string_view request_uri);
  // A response "SIP/2.0 code reason"; an empty reason takes the default phrase.
  static SipMessage NewResponse(int status_code, std::string_view reason = {});

  // ---- start line ----
  bool is_request() const { return is_request_; }
  bool is_response() const { return !is_request_; }
  std::string_view method() const { return View(method_); }  // requests: as written
  Method method_id() const { return method_id_; }            // kUnknown for extensions
  std::string_view request_uri() const { return View(request_uri_); }
  int status_code() const { return status_code_; }              // responses
  std::string_view reason_phrase() const { return View(reason_); }
  // Parses the Request-URI (views into this message).
  Result<Uri> RequestUri() const { return ParseUri(request_uri()); }

  // ---- headers ----
  size_t header_count() const { return headers_.size(); }
  HeaderField header(size_t index) const;
  // First header with this id / name (name: any case, compact forms too).
  std::optional<std::string_view> FindHeader(HeaderId id) const;
  std::optional<std::string_view> FindHeader(std::string_view name) const;
  // Index of the first header with this id at or after `start`, or npos.
  size_t FindHeaderIndex(HeaderId id, size_t start = 0) const;
  size_t FindHeaderIndex(std::string_view name, size_t start = 0) const;
  size_t CountHeaders(HeaderId id) const;
  bool HasHeader(HeaderId id) const { return FindHeaderIndex(id) != npos; }
  // Every value of a header across all its lines, list headers split at commas
  // (quotes and <> respected). Returns false if a list is malformed.
  bool Values(HeaderId id, SmallVector<std::string_view, 8>* out) const;
  bool Values(std::string_view name, SmallVector<std::string_view, 8>* out) const;

  // ---- well-known headers (parse on demand; a message accepted by ParseMessage
  // has valid Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length, Contact) ----
  std::string_view CallId() const { return FindHeader(HeaderId::kCallId).value_or(""); }
  Result<CSeqHeader> CSeq() const;
  Result<ViaHeader> TopVia() const;
  size_t ViaCount() const;  // number of via-parms over all Via lines
  Result<NameAddr> From() const;
  Result<NameAddr> To() const;
  std::string_view FromTag() const;  // "" when absent
  std::string_view ToTag() const;
  std::optional<int> MaxForwards() const;  // nullopt when absent or malformed
  Result<ContactList> Contacts() const;
  // The Expires header; nullopt when absent, error when malformed.
  Result<std::optional<uint32_t>> Expires() const;

  // ---- body ----
  std::string_view body() const { return View(body_); }
  std::string_view ContentType() const { return FindHeader(HeaderId::kContentType).value_or(""); }

  // ---- mutation (for proxies and senders). Values must not contain CR or LF; any
  // that do are replaced by spaces so a value can never inject a header. ----
  void AddHeader(std::string_view name, std::string_view value);      // at the end
  void AddHeader(HeaderId id, std::string_view value) { AddHeader(CanonicalHeaderName(id), value); }
  void PrependHeader(std::string_view name, std::string_view value);  // at the top
  void PrependHeader(HeaderId id, std::string_view value) {
    PrependHeader(CanonicalHeaderName(id), value);
  }
  void InsertHeader(size_t index, std::string_view name, std::string_view value);
  void RemoveHeader(size_t index);
  size_t RemoveHeaders(HeaderId id);  // returns how many were removed
  // Replaces the value of the first header with this id (adding it if absent) and
  // removes the others.
  void SetHeader(HeaderId id, std::string_view value);
  // Removes the first value of a list header (the top Via of a response being
  // forwarded upstream); the whole line goes when it held one value. False if none.
  bool RemoveTopValue(HeaderId id);
  void SetRequestUri(std::string_view uri);
  void SetStatus(int status_code, std::string_view reason = {});
  // Sets the body and Content-Type (removed when content_type is empty).
  void SetBody(std::string_view content_type, std::string_view body);

  // ---- wire form ----
  // The bytes the message was parsed from (folds turned into spaces, anything after
  // Content-Length cut); empty for built messages; not updated by mutators. Use
  // Serialize() for the wire form.
  std::string_view raw() const { return std::string_view(buffer_).substr(0, raw_size_); }
  size_t SerializedSize() const;
  std::string Serialize() const;
  void AppendTo(std::string* out) const;  // appends the wire form to *out

  static constexpr size_t npos = static_cast<size_t>(-1);

 private:
  friend class MessageParser;
  friend SipMessage BuildResponse(const SipMessage&, int, std::string_view, std::string_view);

  struct Span {
    uint32_t offset = 0;
    uint32_t length = 0;
  };
  struct Entry {
    Span name;
    Span value;
    HeaderId id = HeaderId::kUnknown;
  };

  std::string_view View(Span s) const { return std::string_view(buffer_.data() + s.offset, s.length); }
  Span AppendText(std::string_view text);  // appends to buffer_ (CR/LF made spaces)
  Entry MakeEntry(std::string_view name, std::string_view value);
  bool NameMatches(const Entry& e, HeaderId id, std::string_view name) const;

  std::string buffer_;
  size_t raw_size_ = 0;
  bool is_request_ = false;
  Method method_id_ = Method::kUnknown;
  int status_code_ = 0;
  Span method_;       // requests
  Span request_uri_;  // requests
  Span reason_;       // responses
  Span body_;
  SmallVector<Entry, kInlineHeaders> headers_;
};

// Builds a response to `request` (RFC 3261 8.2.6.2): copies all Via values in order,
// From, To, Call-ID and CSeq (and Timestamp for 100); adds `to_tag` to To when To has
// no tag, the status is above 100 and to_tag is not empty. An empty reason takes the
// default phrase. Add Contact, Record-Route, bodies etc. with the mutators.
SipMessage BuildResponse(const SipMessage& request, int status_code, std::string_view reason = {},
                         std::string_view to_tag = {});

// Builds requests for UACs and proxies (REGISTER refreshes, NOTIFY, OPTIONS pings).
// Header order follows the calls; Build() adds Max-Forwards: 70 when none was given.
//   SipMessage notify = RequestBuilder("NOTIFY", contact_uri)
//       .Via("UDP", "10.0.0.1:5060", branch).From(from, from_tag).To(to, to_tag)
//       .CallId(call_id).CSeq(7).Header(HeaderId::kEvent, "presence")
//       .Body("application/pidf+xml", pidf).Build();
class RequestBuilder {
 public:
  RequestBuilder(std::string_view method, std::string_view request_uri);

  // "Via: SIP/2.0/<transport> <sent_by>;branch=<branch>[;rport]"
  RequestBuilder& Via(std::string_view transport, std::string_view sent_by, std::string_view branch,
                      bool rport = false);
  RequestBuilder& MaxForwards(int hops);
  // "From: <uri>;tag=<tag>"; `address` may be a bare URI or a full name-addr.
  RequestBuilder& From(std::string_view address, std::string_view tag);
  RequestBuilder& To(std::string_view address, std::string_view tag = {});
  RequestBuilder& CallId(std::string_view call_id);
  // "CSeq: <number> <method of the request>"
  RequestBuilder& CSeq(uint32_t number);
  RequestBuilder& Contact(std::string_view address);
  RequestBuilder& Header(std::string_view name, std::string_view value);
  RequestBuilder& Header(HeaderId id, std::string_view value);
  RequestBuilder& Body(std::string_view content_type, std::string_view body);
  SipMessage Build();  // consumes the builder

 private:
  SipMessage message_;
  bool has_max_forwards_ = false;
};

// Wraps a bare URI in <>; leaves a name-addr (with '<') as is.
std::string AngleAddress(std::string_view address);

}  // namespace tandem::sip
