// Parsers for the structured header values the SIP core needs: Via (sent-protocol,
// sent-by, branch/received/rport), CSeq, name-addr/addr-spec with header parameters
// (From, To, Contact, Route, Record-Route, Refer-To...), Contact lists with '*',
// q and expires, delta-seconds (Expires), Content-Length, Max-Forwards,
// WWW-Authenticate/Authorization style auth headers, Call-ID and Date checks.
//
// All parsers work in place: results hold string_views into the text they were
// given (normally a SipMessage's buffer), which must outlive them. They take one
// element of a header value (one comma-separated item for list headers) with any
// folding already turned into spaces, and never throw.
//
// Thread-safety: stateless functions; results are plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"
#include "sip/small_vector.h"
#include "sip/uri.h"

namespace tandem::sip {

// ---- generic-param lists: *( SEMI generic-param ), as after a Via or a name-addr ----

struct GenericParam {
  std::string_view name;
  std::string_view value;  // raw: a quoted-string keeps its quotes; "" when no value
  bool has_value = false;
};

// Iterates ";name=value ;flag" text. Next() returns false at the end or on a syntax
// error; ok() tells which.
class GenericParamIterator {
 public:
  explicit GenericParamIterator(std::string_view params) : params_(params) {}
  bool Next(GenericParam* param);
  bool ok() const { return ok_; }
  // Offset just past the last parameter read (where parsing stopped).
  size_t position() const { return pos_; }

 private:
  std::string_view params_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// Checks a whole parameter list; false on an empty or malformed parameter.
bool ValidateGenericParams(std::string_view params);
// The raw value of the first parameter named `name` (case-insensitive): "" for a
// flag, nullopt when absent (or when the list is malformed).
std::optional<std::string_view> FindGenericParam(std::string_view params, std::string_view name);

// ---- Via ----

struct ViaHeader {
  std::string_view protocol_name;     // "SIP"
  std::string_view protocol_version;  // "2.0"
  std::string_view transport;         // "UDP", "TCP", "TLS", "SCTP", "WS", ... as written
  std::string_view host;              // IPv6 keeps its brackets
  HostKind host_kind = HostKind::kNone;
  bool has_port = false;
  uint16_t port = 0;
  std::string_view params;            // ";branch=...;rport" as written ("" if none)
  std::string_view branch;            // "" when absent
  std::string_view received;          // "" when absent
  bool has_rport = false;             // rport present (RFC 3581)
  std::optional<uint16_t> rport;      // its value when it has one

  std::optional<std::string_view> Param(std::string_view name) const {
    return FindGenericParam(params, name);
  }
};

// Parses one via-parm ("SIP/2.0/UDP host:5060;branch=z9hG4bK..."). Folding and white
// space around '/', ':', ';' and '=' are accepted, as RFC 3261 allows.
Result<ViaHeader> ParseVia(std::string_view element);
// Allocation-free form: fills *out and returns nullptr, or a static error text.
const char* TryParseVia(std::string_view element, ViaHeader* out);
// True for an RFC 3261 branch: the magic cookie "z9hG4bK" followed by at least one
// character. A bare cookie (RFC 4475 badbranch) or a missing branch means RFC 2543
// transaction matching must be used.
bool IsRfc3261Branch(std::string_view branch);

// ---- CSeq ----

struct CSeqHeader {
  uint32_t number = 0;
  std::string_view method;
};
// "4711 INVITE"; the number must fit 32 bits (RFC 4475 scalar02 is rejected).
Result<CSeqHeader> ParseCSeq(std::string_view value);

// ---- name-addr / addr-spec with header parameters ----

struct NameAddr {
  std::string_view display_name;  // as written: quoted-string with quotes, or tokens; "" if none
  bool angle_brackets = false;    // name-addr form (<uri>) rather than addr-spec
  Uri uri;
  std::string_view params;        // header parameters ";tag=x;q=0.5" ("" if none)

  // The display name with quotes removed and quoted-pairs resolved.
  std::string DisplayName() const;
  std::optional<std::string_view> Param(std::string_view name) const {
    return FindGenericParam(params, name);
  }
  std::string_view Tag() const { return Param("tag").value_or(std::string_view()); }
};

// Parses ( name-addr / addr-spec ) *( SEMI generic-param ), strictly: no white space
// inside <...> (RFC 4475 badaspec), display names are tokens or a balanced
// quoted-string (baddn, quotbal), and an addr-spec may not hold ',', '?' or ';' in its
// URI (regbadct). Any URI scheme is accepted; SIP/SIPS URIs are checked fully.
Result<NameAddr> ParseNameAddr(std::string_view element);
// Allocation-free form: fills *out and returns nullptr, or a static error text.
const char* TryParseNameAddr(std::string_view element, NameAddr* out);

// ---- Contact ----

struct ContactList {
  bool is_star = false;  // "Contact: *" (only with Expires: 0 in a REGISTER)
  SmallVector<NameAddr, 4> contacts;
};
// Adds the contacts of one Contact header value (a comma-separated list, or "*").
Status AppendContacts(std::string_view value, ContactList* list);
// Checks one Contact value without storing it; `*star` carries "saw '*'" across the
// values of one message. Returns nullptr or a static error text.
const char* ValidateContacts(std::string_view value, bool* star);
// The q parameter in thousandths (q=0.5 -> 500); nullopt when absent, error if malformed.
Result<std::optional<int>> ContactQ(const NameAddr& contact);
// The expires parameter; nullopt when absent, error if malformed or > 2^32-1 (RFC 3261
// says to treat such values as the default, e.g. 3600).
Result<std::optional<uint32_t>> ContactExpires(const NameAddr& contact);

// ---- scalars ----

// delta-seconds (Expires, Min-Expires, Retry-After's number): 1*DIGIT up to 2^32-1.
Result<uint32_t> ParseDeltaSeconds(std::string_view value);
// Content-Length: 1*DIGIT up to 2^32-1 ("-999" and "abc" are errors).
Result<uint32_t> ParseContentLength(std::string_view value);
// Max-Forwards: 1*DIGIT, 0..255.
Result<int> ParseMaxForwards(std::string_view value);
// q-value "0.5", "1", "1.000": thousandths.
Result<int> ParseQValue(std::string_view value);

// Call-ID: word [ "@" word ].
bool IsValidCallId(std::string_view value);
// SIP-date: rfc1123-date in GMT, e.g. "Sat, 13 Nov 2010 23:29:00 GMT" (RFC 4475
// baddate's "EST" is invalid).
bool IsValidSipDate(std::string_view value);

// ---- authentication (RFC 3261 section 25, RFC 7235 shape) ----

struct AuthParam {
  std::string_view name;
  std::string_view value;  // without surrounding quotes; quoted-pairs not resolved
  bool quoted = false;
};

// WWW-Authenticate / Proxy-Authenticate challenges and Authorization /
// Proxy-Authorization credentials: a scheme followed by name=value pairs.
struct AuthHeader {
  std::string_view scheme;   // "Digest", or any token (RFC 4475 regaut01)
  SmallVector<AuthParam, 12> params;
  std::string_view token68;  // RFC 7235 token68 form ("Basic dXNlcg=="); "" otherwise

  // Case-insensitive parameter lookup; the value is unquoted (see AuthParam).
  std::optional<std::string_view> Param(std::string_view name) const;
};
Result<AuthHeader> ParseAuthHeader(std::string_view value);

}  // namespace tandem::sip
