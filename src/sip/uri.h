// URIs as they appear in SIP messages (RFC 3261 section 19.1, RFC 3966 for tel):
// SIP/SIPS URIs are split into user, password, host (name, IPv4 or [IPv6]), port,
// uri-parameters and headers; any other scheme is checked as an absoluteURI and kept
// opaque. Parsing is in place: a Uri's fields view the text given to ParseUri, which
// must outlive it. Fields keep their %-escapes; Unescape() or the comparison helpers
// resolve them.
//
// Thread-safety: Uri is a value of string_views; const use is safe from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"

namespace tandem::sip {

enum class UriScheme : uint8_t { kSip, kSips, kTel, kOther };
enum class HostKind : uint8_t { kNone, kDomain, kIpv4, kIpv6 };

struct Uri {
  std::string_view text;         // the whole URI as written
  UriScheme scheme = UriScheme::kOther;
  std::string_view scheme_text;  // as written: "sip", "SIPS", "soap.beep"

  // SIP and SIPS only. Everything stays %-escaped as written.
  bool has_user = false;
  std::string_view user;
  bool has_password = false;
  std::string_view password;
  std::string_view host;         // an IPv6 reference keeps its brackets: "[::1]"
  HostKind host_kind = HostKind::kNone;
  bool has_port = false;
  uint16_t port = 0;
  std::string_view params;       // "transport=tcp;lr" (no leading ';'), empty if none
  std::string_view headers;      // "Subject=x&Route=..." (no leading '?'), empty if none

  // Every scheme: what follows "scheme:" (for SIP, user@host...; for tel, the number).
  std::string_view opaque;

  bool is_sip() const { return scheme == UriScheme::kSip || scheme == UriScheme::kSips; }
  // The host without the brackets of an IPv6 reference.
  std::string_view HostAddress() const;
  // The value of uri-parameter `name` (compared case-insensitively, escapes resolved
  // in the name): the raw value, "" for a parameter without a value, nullopt if absent.
  std::optional<std::string_view> Param(std::string_view name) const;
  bool HasParam(std::string_view name) const { return Param(name).has_value(); }
  // The raw (escaped) value of URI header `name`, nullopt if absent.
  std::optional<std::string_view> Header(std::string_view name) const;
  std::string UnescapedUser() const;
};

// Parses any URI: SIP/SIPS fully and strictly, tel and other schemes as an
// absoluteURI ("scheme:" followed by URI characters). Never throws.
Result<Uri> ParseUri(std::string_view text);
// The same without allocating: fills *out and returns nullptr, or returns a static
// description of the error (*out is then unspecified). For hot paths.
const char* TryParseUri(std::string_view text, Uri* out);

// URI equality by RFC 3261 section 19.1.4 for SIP/SIPS (escapes resolved; userinfo
// case-sensitive; host case-insensitive; user/ttl/method/maddr/transport parameters
// must appear in both; other parameters compared only when in both; headers must
// match as a set). For other schemes: scheme case-insensitive, rest compared after
// resolving escapes.
bool UriEquals(const Uri& a, const Uri& b);

// Calls `fn(name, value, has_value)` for each element of a uri-parameters string
// ("a=b;c") or a headers string ("a=b&c=d", separator '&'). Stops early if fn
// returns false.
template <typename Fn>
void ForEachUriParam(std::string_view params, char separator, Fn&& fn);

// True when `escaped` (with %-escapes) equals `plain` ignoring ASCII case.
bool EscapedEqualsIgnoreCase(std::string_view escaped, std::string_view plain);

// Checks a host (domain name, IPv4 or bracketed IPv6) and tells which kind it is.
HostKind ClassifyHost(std::string_view host);  // kNone when invalid

}  // namespace tandem::sip

// ---- template implementation ----
namespace tandem::sip {
template <typename Fn>
void ForEachUriParam(std::string_view params, char separator, Fn&& fn) {
  size_t pos = 0;
  while (pos <= params.size() && !params.empty()) {
    size_t end = params.find(separator, pos);
    if (end == std::string_view::npos) end = params.size();
    std::string_view item = params.substr(pos, end - pos);
    size_t eq = item.find('=');
    bool keep_going = (eq == std::string_view::npos)
                          ? fn(item, std::string_view(), false)
                          : fn(item.substr(0, eq), item.substr(eq + 1), true);
    if (!keep_going || end == params.size()) break;
    pos = end + 1;
  }
}
}  // namespace tandem::sip
