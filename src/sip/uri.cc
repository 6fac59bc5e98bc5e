#include "sip/uri.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "sip/syntax.h"

namespace tandem::sip {
namespace {

std::unexpected<Error> UriError(std::string message) {
  return MakeError(ErrorCode::kInvalidArgument, std::move(message));
}

int HexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = ToLowerAscii(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool IsReserved(char c) {
  switch (c) {
    case ';': case '/': case '?': case ':': case '@': case '&': case '=': case '+':
    case '$': case ',':
      return true;
    default:
      return false;
  }
}

// Reads one logical character of escaped text: an escape that decodes to a reserved
// character stays distinct from the literal character (RFC 3261 19.1.4).
struct EscapedChar {
  int value;          // the decoded byte
  bool kept_escaped;  // an escaped reserved character
};

EscapedChar ReadEscaped(std::string_view s, size_t* pos) {
  size_t i = *pos;
  if (s[i] == '%' && i + 2 < s.size()) {
    int hi = HexDigitValue(s[i + 1]);
    int lo = HexDigitValue(s[i + 2]);
    if (hi >= 0 && lo >= 0) {
      *pos = i + 3;
      char c = static_cast<char>(hi * 16 + lo);
      return {static_cast<unsigned char>(c), IsReserved(c)};
    }
  }
  *pos = i + 1;
  return {static_cast<unsigned char>(s[i]), false};
}

bool EscapedEquals(std::string_view a, std::string_view b, bool ignore_case) {
  size_t i = 0;
  size_t j = 0;
  while (i < a.size() && j < b.size()) {
    EscapedChar ca = ReadEscaped(a, &i);
    EscapedChar cb = ReadEscaped(b, &j);
    if (ca.kept_escaped != cb.kept_escaped) return false;
    int va = ca.value;
    int vb = cb.value;
    if (ignore_case) {
      va = ToLowerAscii(static_cast<char>(va));
      vb = ToLowerAscii(static_cast<char>(vb));
      va &= 0xff;
      vb &= 0xff;
    }
    if (va != vb) return false;
  }
  return i == a.size() && j == b.size();
}

bool IsValidIpv4(std::string_view s) {
  int groups = 0;
  size_t pos = 0;
  while (true) {
    size_t start = pos;
    uint32_t value = 0;
    while (pos < s.size() && IsDigit(s[pos])) {
      value = value * 10 + static_cast<uint32_t>(s[pos] - '0');
      if (value > 255 || pos - start >= 3) return false;
      ++pos;
    }
    if (pos == start) return false;
    ++groups;
    if (pos == s.size()) break;
    if (s[pos] != '.' || groups == 4) return false;
    ++pos;
  }
  return groups == 4;
}

bool IsValidIpv6(std::string_view s) {
  // The operating system's parser is exact; it needs a NUL-terminated copy.
  char buffer[64];
  if (s.empty() || s.size() >= sizeof(buffer)) return false;
  std::memcpy(buffer, s.data(), s.size());
  buffer[s.size()] = '\0';
  unsigned char out[16];
  return inet_pton(AF_INET6, buffer, out) == 1;
}

bool IsValidDomain(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  if (s.empty()) return false;
  // Labels of alphanum and '-', not starting or ending with '-'; the top label
  // starts with a letter (an all-numeric name must be an IPv4 address).
  size_t label_start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    char c = i < s.size() ? s[i] : '.';
    if (c == '.') {
      if (i == label_start || s[i - 1] == '-') return false;
      if (i == s.size()) return IsAlpha(s[label_start]);
      label_start = i + 1;
    } else if (c == '-') {
      if (i == label_start) return false;
    } else if (!IsClass(c, kAlnum)) {
      return false;
    }
  }
  return false;
}

bool IsValidScheme(std::string_view s) {
  if (s.empty() || !IsAlpha(s.front())) return false;
  for (char c : s) {
    if (!IsClass(c, kSchemeChar)) return false;
  }
  return true;
}

bool ValidateParams(std::string_view params) {
  bool ok = true;
  ForEachUriParam(params, ';', [&](std::string_view name, std::string_view value, bool has_value) {
    if (name.empty() || !IsEscapedClass(name, kParamChar) ||
        (has_value && (value.empty() || !IsEscapedClass(value, kParamChar)))) {
      ok = false;
    }
    return ok;
  });
  return ok;
}

bool ValidateHeaders(std::string_view headers) {
  bool ok = true;
  ForEachUriParam(headers, '&', [&](std::string_view name, std::string_view value, bool has_value) {
    if (!has_value || name.empty() || !IsEscapedClass(name, kHeaderChar) ||
        (!value.empty() && !IsEscapedClass(value, kHeaderChar))) {
      ok = false;
    }
    return ok;
  });
  return ok;
}

const char* ParseSipPart(Uri& uri) {
  std::string_view rest = uri.opaque;
  const char* data = rest.data();
  size_t n = rest.size();
  size_t pos = 0;
  // userinfo first: the user part may hold '?' and ';', but '@' is never legal
  // unescaped anywhere else in a SIP URI.
  const void* at = n > 0 ? std::memchr(data, '@', n) : nullptr;
  if (at != nullptr) {
    size_t at_index = static_cast<size_t>(static_cast<const char*>(at) - data);
    std::string_view userinfo = rest.substr(0, at_index);
    const void* colon = at_index > 0 ? std::memchr(data, ':', at_index) : nullptr;
    uri.has_user = true;
    if (colon != nullptr) {
      size_t colon_index = static_cast<size_t>(static_cast<const char*>(colon) - data);
      uri.user = userinfo.substr(0, colon_index);
      uri.password = userinfo.substr(colon_index + 1);
      uri.has_password = true;
      if (!IsEscapedClass(uri.password, kPasswordChar)) return "malformed password in SIP URI";
    } else {
      uri.user = userinfo;
    }
    if (uri.user.empty() || !IsEscapedClass(uri.user, kUserChar)) return "malformed user part in SIP URI";
    pos = at_index + 1;
  }
  // host
  size_t host_start = pos;
  if (pos < n && data[pos] == '[') {
    while (pos < n && data[pos] != ']') ++pos;
    if (pos == n) return "unterminated IPv6 reference in SIP URI";
    ++pos;
  } else {
    while (pos < n && IsClass(data[pos], kHostChar)) ++pos;
  }
  uri.host = rest.substr(host_start, pos - host_start);
  uri.host_kind = ClassifyHost(uri.host);
  if (uri.host_kind == HostKind::kNone) return "malformed host in SIP URI";
  // port
  if (pos < n && data[pos] == ':') {
    size_t port_start = ++pos;
    uint32_t port = 0;
    while (pos < n && IsDigit(data[pos]) && pos - port_start < 5) {
      port = port * 10 + static_cast<uint32_t>(data[pos] - '0');
      ++pos;
    }
    if (pos == port_start || port > 65535 || (pos < n && IsDigit(data[pos]))) {
      return "malformed port in SIP URI";
    }
    uri.has_port = true;
    uri.port = static_cast<uint16_t>(port);
  }
  // parameters
  if (pos < n && data[pos] == ';') {
    size_t params_start = ++pos;
    while (pos < n && data[pos] != '?') ++pos;
    uri.params = rest.substr(params_start, pos - params_start);
    if (uri.params.empty() || !ValidateParams(uri.params)) return "malformed parameter in SIP URI";
  }
  // headers
  if (pos < n && data[pos] == '?') {
    uri.headers = rest.substr(pos + 1);
    if (uri.headers.empty() || !ValidateHeaders(uri.headers)) return "malformed headers in SIP URI";
    pos = n;
  }
  if (pos != n) return "unexpected character in SIP URI";
  return nullptr;
}

}  // namespace

HostKind ClassifyHost(std::string_view host) {
  if (host.empty()) return HostKind::kNone;
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return HostKind::kNone;
    return IsValidIpv6(host.substr(1, host.size() - 2)) ? HostKind::kIpv6 : HostKind::kNone;
  }
  if (IsDigit(host.front()) && IsValidIpv4(host)) return HostKind::kIpv4;
  return IsValidDomain(host) ? HostKind::kDomain : HostKind::kNone;
}

bool EscapedEqualsIgnoreCase(std::string_view escaped, std::string_view plain) {
  size_t i = 0;
  size_t j = 0;
  while (i < escaped.size() && j < plain.size()) {
    EscapedChar c = ReadEscaped(escaped, &i);
    if (ToLowerAscii(static_cast<char>(c.value)) != ToLowerAscii(plain[j])) return false;
    ++j;
  }
  return i == escaped.size() && j == plain.size();
}

std::string_view Uri::HostAddress() const {
  if (host_kind == HostKind::kIpv6) return host.substr(1, host.size() - 2);
  return host;
}

std::optional<std::string_view> Uri::Param(std::string_view name) const {
  std::optional<std::string_view> found;
  ForEachUriParam(params, ';', [&](std::string_view n, std::string_view v, bool) {
    if (EscapedEqualsIgnoreCase(n, name)) {
      found = v;
      return false;
    }
    return true;
  });
  return found;
}

std::optional<std::string_view> Uri::Header(std::string_view name) const {
  std::optional<std::string_view> found;
  ForEachUriParam(headers, '&', [&](std::string_view n, std::string_view v, bool) {
    if (EscapedEqualsIgnoreCase(n, name)) {
      found = v;
      return false;
    }
    return true;
  });
  return found;
}

std::string Uri::UnescapedUser() const { return Unescape(user); }

const char* TryParseUri(std::string_view text, Uri* out) {
  // Field by field: assigning a Uri() temporary costs store-forwarding stalls.
  Uri& uri = *out;
  uri.text = text;
  uri.scheme = UriScheme::kOther;
  uri.has_user = false;
  uri.user = {};
  uri.has_password = false;
  uri.password = {};
  uri.host = {};
  uri.host_kind = HostKind::kNone;
  uri.has_port = false;
  uri.port = 0;
  uri.params = {};
  uri.headers = {};
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) return "URI has no scheme";
  uri.scheme_text = text.substr(0, colon);
  if (!IsValidScheme(uri.scheme_text)) return "malformed URI scheme";
  uri.opaque = text.substr(colon + 1);
  if (EqualsIgnoreCase(uri.scheme_text, "sip")) {
    uri.scheme = UriScheme::kSip;
  } else if (EqualsIgnoreCase(uri.scheme_text, "sips")) {
    uri.scheme = UriScheme::kSips;
  } else if (EqualsIgnoreCase(uri.scheme_text, "tel")) {
    uri.scheme = UriScheme::kTel;
  }
  if (uri.is_sip()) return ParseSipPart(uri);
  // tel and other schemes: absoluteURI characters, at least one.
  if (uri.opaque.empty() || !IsEscapedClass(uri.opaque, kUricChar)) return "malformed URI";
  return nullptr;
}

Result<Uri> ParseUri(std::string_view text) {
  Result<Uri> result(std::in_place);
  if (const char* error = TryParseUri(text, &*result)) return UriError(error);
  return result;
}

namespace {

// A parameter or header normalized for comparison: name unescaped and lower-cased.
struct NormalizedItem {
  std::string name;
  std::string_view value;  // still escaped; compared with EscapedEquals
  size_t order;            // position in the URI, so the first occurrence wins
};

// `s` with escapes resolved except those of reserved characters, which stay as
// upper-case %XX: two texts have the same canonical form exactly when they are
// equivalent by RFC 3261 19.1.4 (case-sensitively, or folded when `lower`).
std::string Canonical(std::string_view s, bool lower) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    EscapedChar c = ReadEscaped(s, &i);
    char ch = static_cast<char>(c.value);
    if (c.kept_escaped) {
      out.push_back('%');
      out.push_back(kHex[(c.value >> 4) & 15]);
      out.push_back(kHex[c.value & 15]);
    } else {
      out.push_back(lower ? ToLowerAscii(ch) : ch);
    }
  }
  return out;
}

std::vector<NormalizedItem> Normalize(std::string_view list, char separator) {
  std::vector<NormalizedItem> items;
  ForEachUriParam(list, separator, [&](std::string_view name, std::string_view value, bool) {
    items.push_back(NormalizedItem{Canonical(name, /*lower=*/true), value, items.size()});
    return true;
  });
  std::sort(items.begin(), items.end(), [](const NormalizedItem& x, const NormalizedItem& y) {
    return x.name != y.name ? x.name < y.name : x.order < y.order;
  });
  return items;
}

// Drops repeated names, keeping the first occurrence (sorted input).
void KeepFirst(std::vector<NormalizedItem>* items) {
  auto last = std::unique(items->begin(), items->end(),
                          [](const NormalizedItem& x, const NormalizedItem& y) { return x.name == y.name; });
  items->erase(last, items->end());
}

bool MustMatchParam(std::string_view name) {
  return name == "user" || name == "ttl" || name == "method" || name == "maddr" || name == "transport";
}

}  // namespace

bool UriEquals(const Uri& a, const Uri& b) {
  if (a.scheme != b.scheme || !EqualsIgnoreCase(a.scheme_text, b.scheme_text)) return false;
  if (!a.is_sip()) {
    return EscapedEquals(a.opaque, b.opaque, a.scheme == UriScheme::kTel);
  }
  if (a.has_user != b.has_user || !EscapedEquals(a.user, b.user, false)) return false;
  if (a.has_password != b.has_password || !EscapedEquals(a.password, b.password, false)) {
    return false;
  }
  if (!EqualsIgnoreCase(a.host, b.host)) return false;
  if (a.has_port != b.has_port || a.port != b.port) return false;
  if (a.params == b.params && a.headers == b.headers) return true;  // the common case

  // Parameters in both must match (case-insensitively); user, ttl, method, maddr and
  // transport must be in both or neither; others in one only are ignored. Sorted
  // merge, so hostile URIs with thousands of parameters cost n log n, not n*m.
  std::vector<NormalizedItem> pa = Normalize(a.params, ';');
  std::vector<NormalizedItem> pb = Normalize(b.params, ';');
  KeepFirst(&pa);
  KeepFirst(&pb);
  size_t i = 0;
  size_t j = 0;
  while (i < pa.size() || j < pb.size()) {
    if (j == pb.size() || (i < pa.size() && pa[i].name < pb[j].name)) {
      if (MustMatchParam(pa[i].name)) return false;
      ++i;
    } else if (i == pa.size() || pb[j].name < pa[i].name) {
      if (MustMatchParam(pb[j].name)) return false;
      ++j;
    } else {
      if (!EscapedEquals(pa[i].value, pb[j].value, true)) return false;
      ++i;
      ++j;
    }
  }

  // Headers: the same multiset; names case-insensitive, values case-sensitive.
  std::vector<NormalizedItem> ha = Normalize(a.headers, '&');
  std::vector<NormalizedItem> hb = Normalize(b.headers, '&');
  if (ha.size() != hb.size()) return false;
  auto canonical = [](const std::vector<NormalizedItem>& items) {
    std::vector<std::pair<std::string, std::string>> out;
    out.reserve(items.size());
    for (const NormalizedItem& item : items) out.emplace_back(item.name, Canonical(item.value, false));
    std::sort(out.begin(), out.end());
    return out;
  };
  return canonical(ha) == canonical(hb);
}

}  // namespace tandem::sip
