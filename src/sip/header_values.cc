#include "sip/header_values.h"

#include <cstring>

#include "sip/syntax.h"

namespace tandem::sip {
namespace {

std::unexpected<Error> ValueError(std::string message) {
  return MakeError(ErrorCode::kInvalidArgument, std::move(message));
}

// A gen-value that is not quoted: token characters plus those of a host (IPv6).
bool IsGenValueChar(char c) { return IsClass(c, kToken) || c == '[' || c == ']' || c == ':'; }

size_t ScanClass(std::string_view s, size_t pos, uint16_t cls) {
  while (pos < s.size() && IsClass(s[pos], cls)) ++pos;
  return pos;
}

}  // namespace

// ---- generic params ----

bool GenericParamIterator::Next(GenericParam* param) {
  if (!ok_) return false;
  size_t pos = SkipLws(params_, pos_);
  if (pos >= params_.size()) {
    pos_ = pos;
    return false;
  }
  if (params_[pos] != ';') {
    ok_ = false;
    return false;
  }
  pos = SkipLws(params_, pos + 1);
  size_t name_start = pos;
  pos = ScanClass(params_, pos, kToken);
  if (pos == name_start) {
    ok_ = false;
    return false;
  }
  param->name = params_.substr(name_start, pos - name_start);
  param->value = {};
  param->has_value = false;
  size_t after_name = pos;
  pos = SkipLws(params_, pos);
  if (pos < params_.size() && params_[pos] == '=') {
    pos = SkipLws(params_, pos + 1);
    size_t value_start = pos;
    if (pos < params_.size() && params_[pos] == '"') {
      std::optional<size_t> end = ScanQuotedString(params_, pos);
      if (!end) {
        ok_ = false;
        return false;
      }
      pos = *end;
    } else {
      while (pos < params_.size() && IsGenValueChar(params_[pos])) ++pos;
    }
    if (pos == value_start) {
      ok_ = false;
      return false;
    }
    param->value = params_.substr(value_start, pos - value_start);
    param->has_value = true;
  } else {
    pos = after_name;
  }
  pos_ = pos;
  return true;
}

bool ValidateGenericParams(std::string_view params) {
  GenericParamIterator it(params);
  GenericParam p;
  while (it.Next(&p)) {
  }
  return it.ok();
}

std::optional<std::string_view> FindGenericParam(std::string_view params, std::string_view name) {
  GenericParamIterator it(params);
  GenericParam p;
  while (it.Next(&p)) {
    if (EqualsIgnoreCase(p.name, name)) return p.value;
  }
  return std::nullopt;
}

// ---- Via ----

bool IsRfc3261Branch(std::string_view branch) {
  return branch.size() > 7 && branch.substr(0, 7) == "z9hG4bK";
}

const char* TryParseVia(std::string_view element, ViaHeader* out) {
  std::string_view s = TrimLws(element);
  ViaHeader& via = *out;  // reset field by field (a temporary would stall stores)
  via.has_port = false;
  via.port = 0;
  via.branch = {};
  via.received = {};
  via.has_rport = false;
  via.rport.reset();
  size_t pos = 0;
  auto token = [&](std::string_view* out) {
    size_t start = pos;
    pos = ScanClass(s, pos, kToken);
    *out = s.substr(start, pos - start);
    return pos > start;
  };
  auto slash = [&]() {
    pos = SkipLws(s, pos);
    if (pos >= s.size() || s[pos] != '/') return false;
    pos = SkipLws(s, pos + 1);
    return true;
  };
  if (!token(&via.protocol_name) || !slash() || !token(&via.protocol_version) || !slash() ||
      !token(&via.transport)) {
    return "malformed Via sent-protocol";
  }
  if (pos >= s.size() || !IsLws(s[pos])) return "Via lacks a sent-by";
  pos = SkipLws(s, pos);
  size_t host_start = pos;
  if (pos < s.size() && s[pos] == '[') {
    size_t close = s.find(']', pos);
    if (close == std::string_view::npos) return "malformed Via host";
    pos = close + 1;
  } else {
    pos = ScanClass(s, pos, kHostChar);
  }
  via.host = s.substr(host_start, pos - host_start);
  via.host_kind = ClassifyHost(via.host);
  if (via.host_kind == HostKind::kNone) return "malformed Via host";
  size_t after_host = SkipLws(s, pos);
  if (after_host < s.size() && s[after_host] == ':') {
    pos = SkipLws(s, after_host + 1);
    size_t port_start = pos;
    while (pos < s.size() && IsDigit(s[pos])) ++pos;
    std::optional<uint32_t> port = ParseUint32(s.substr(port_start, pos - port_start));
    if (!port || *port > 65535) return "malformed Via port";
    via.has_port = true;
    via.port = static_cast<uint16_t>(*port);
  }
  via.params = s.substr(pos);
  GenericParamIterator it(via.params);
  GenericParam p;
  while (it.Next(&p)) {
    if (EqualsIgnoreCase(p.name, "branch")) {
      if (!p.has_value || !IsToken(p.value)) return "malformed Via branch";
      via.branch = p.value;
    } else if (EqualsIgnoreCase(p.name, "received")) {
      if (!p.has_value) return "Via received without an address";
      std::string_view address = p.value;
      HostKind kind = ClassifyHost(address);
      if (kind != HostKind::kIpv4 && kind != HostKind::kIpv6) {
        // received carries a bare IPv6address (no brackets).
        char bracketed[64];
        if (address.size() + 2 > sizeof(bracketed)) return "malformed Via received";
        bracketed[0] = '[';
        std::memcpy(bracketed + 1, address.data(), address.size());
        bracketed[address.size() + 1] = ']';
        kind = ClassifyHost(std::string_view(bracketed, address.size() + 2));
        if (kind != HostKind::kIpv6) return "malformed Via received";
      }
      via.received = address;
    } else if (EqualsIgnoreCase(p.name, "rport")) {
      via.has_rport = true;
      if (p.has_value) {
        std::optional<uint32_t> port = ParseUint32(p.value);
        if (!port || *port > 65535) return "malformed Via rport";
        via.rport = static_cast<uint16_t>(*port);
      }
    } else if (EqualsIgnoreCase(p.name, "ttl")) {
      std::optional<uint32_t> ttl = ParseUint32(p.value);
      if (!ttl || *ttl > 255) return "malformed Via ttl";
    } else if (EqualsIgnoreCase(p.name, "maddr")) {
      if (ClassifyHost(p.value) == HostKind::kNone) return "malformed Via maddr";
    }
  }
  if (!it.ok()) return "malformed Via parameter";
  return nullptr;
}

Result<ViaHeader> ParseVia(std::string_view element) {
  Result<ViaHeader> result(std::in_place);
  if (const char* error = TryParseVia(element, &*result)) return ValueError(error);
  return result;
}

// ---- CSeq ----

Result<CSeqHeader> ParseCSeq(std::string_view value) {
  std::string_view s = TrimLws(value);
  size_t pos = 0;
  while (pos < s.size() && IsDigit(s[pos])) ++pos;
  std::optional<uint32_t> number = ParseUint32(s.substr(0, pos));
  if (!number) return ValueError("CSeq number is missing or larger than 2^32-1");
  if (pos >= s.size() || !IsLws(s[pos])) return ValueError("CSeq lacks a method");
  pos = SkipLws(s, pos);
  std::string_view method = s.substr(pos);
  if (!IsToken(method)) return ValueError("malformed CSeq method");
  return CSeqHeader{*number, method};
}

// ---- name-addr ----

std::string NameAddr::DisplayName() const {
  if (!display_name.empty() && display_name.front() == '"') return Unquote(display_name);
  return std::string(display_name);
}

const char* TryParseNameAddr(std::string_view element, NameAddr* result) {
  std::string_view s = TrimLws(element);
  if (s.empty()) return "empty address";
  NameAddr& out = *result;  // reset field by field (a temporary would stall stores)
  out.display_name = {};
  out.angle_brackets = false;
  out.params = {};
  size_t n = s.size();
  size_t pos = 0;
  bool name_addr = false;
  if (s[0] == '"') {
    std::optional<size_t> end = ScanQuotedString(s, 0);
    if (!end) return "unterminated quoted display name";
    out.display_name = s.substr(0, *end);
    pos = SkipLws(s, *end);
    if (pos >= n || s[pos] != '<') return "quoted display name not followed by <URI>";
    name_addr = true;
  } else if (s[0] == '<') {
    name_addr = true;
  } else {
    // *(token LWS) "<" is a display name; anything else starts an addr-spec.
    size_t p = 0;
    while (true) {
      size_t t = p;
      p = ScanClass(s, p, kToken);
      if (p == t) break;
      size_t q = SkipLws(s, p);
      if (q < n && s[q] == '<') {
        out.display_name = s.substr(0, p);
        pos = q;
        name_addr = true;
        break;
      }
      if (q > p && q < n && IsClass(s[q], kToken)) {
        p = q;
        continue;
      }
      break;
    }
  }

  std::string_view uri_text;
  if (name_addr) {
    size_t close = s.find('>', pos + 1);
    if (close == std::string_view::npos) return "unterminated <URI>";
    uri_text = s.substr(pos + 1, close - pos - 1);
    if (uri_text.empty() || IsLws(uri_text.front()) || IsLws(uri_text.back())) {
      return "white space inside <URI>";
    }
    out.angle_brackets = true;
    out.params = s.substr(close + 1);
  } else {
    size_t semi = s.find(';');
    if (semi == std::string_view::npos) semi = n;
    uri_text = TrimLws(s.substr(0, semi));
    out.params = s.substr(semi);
    if (ContainsAnyOf(uri_text, '<', '"')) {
      return "display name must be tokens or a quoted string";
    }
    if (ContainsAnyOf(uri_text, ',', '?')) {
      return "a URI holding ',' or '?' must be enclosed in <>";
    }
  }
  if (const char* error = TryParseUri(uri_text, &out.uri)) return error;
  if (!ValidateGenericParams(out.params)) return "malformed header parameter";
  return nullptr;
}

Result<NameAddr> ParseNameAddr(std::string_view element) {
  Result<NameAddr> result(std::in_place);
  if (const char* error = TryParseNameAddr(element, &*result)) return ValueError(error);
  return result;
}

// ---- Contact ----

namespace {
// Walks one Contact value; calls fn(const NameAddr&) for each contact.
template <typename Fn>
const char* WalkContacts(std::string_view value, bool* star, Fn&& fn) {
  std::string_view trimmed = TrimLws(value);
  if (trimmed == "*") {
    if (*star) return "'*' mixed with other contacts";
    *star = true;
    return nullptr;
  }
  CommaListIterator it(trimmed);
  std::string_view element;
  bool any = false;
  NameAddr contact;
  while (it.Next(&element)) {
    if (*star) return "'*' mixed with other contacts";
    if (const char* error = TryParseNameAddr(element, &contact)) return error;
    fn(contact);
    any = true;
  }
  if (!it.ok()) return "malformed Contact list";
  if (!any) return "empty Contact";
  return nullptr;
}
}  // namespace

Status AppendContacts(std::string_view value, ContactList* list) {
  bool star = list->is_star;
  if (TrimLws(value) == "*" && !list->contacts.empty()) return ValueError("'*' mixed with other contacts");
  const char* error = WalkContacts(value, &star, [&](const NameAddr& c) { list->contacts.push_back(c); });
  if (error) return ValueError(error);
  list->is_star = star;
  return OkStatus();
}

const char* ValidateContacts(std::string_view value, bool* star) {
  return WalkContacts(value, star, [](const NameAddr&) {});
}

Result<std::optional<int>> ContactQ(const NameAddr& contact) {
  std::optional<std::string_view> q = contact.Param("q");
  if (!q) return std::optional<int>();
  Result<int> value = ParseQValue(*q);
  if (!value) return std::unexpected(value.error());
  return std::optional<int>(*value);
}

Result<std::optional<uint32_t>> ContactExpires(const NameAddr& contact) {
  std::optional<std::string_view> e = contact.Param("expires");
  if (!e) return std::optional<uint32_t>();
  Result<uint32_t> value = ParseDeltaSeconds(*e);
  if (!value) return std::unexpected(value.error());
  return std::optional<uint32_t>(*value);
}

// ---- scalars ----

Result<uint32_t> ParseDeltaSeconds(std::string_view value) {
  std::optional<uint32_t> v = ParseUint32(TrimLws(value));
  if (!v) return ValueError("delta-seconds must be 0..4294967295");
  return *v;
}

Result<uint32_t> ParseContentLength(std::string_view value) {
  std::optional<uint32_t> v = ParseUint32(TrimLws(value));
  if (!v) return ValueError("malformed Content-Length");
  return *v;
}

Result<int> ParseMaxForwards(std::string_view value) {
  std::optional<uint32_t> v = ParseUint32(TrimLws(value));
  if (!v || *v > 255) return ValueError("Max-Forwards must be 0..255");
  return static_cast<int>(*v);
}

Result<int> ParseQValue(std::string_view value) {
  std::string_view s = StripQuotes(TrimLws(value));
  if (s.empty() || (s[0] != '0' && s[0] != '1')) return ValueError("malformed q-value");
  int whole = s[0] - '0';
  int thousandths = 0;
  if (s.size() > 1) {
    if (s[1] != '.' || s.size() > 5) return ValueError("malformed q-value");
    int scale = 100;
    for (size_t i = 2; i < s.size(); ++i) {
      if (!IsDigit(s[i])) return ValueError("malformed q-value");
      thousandths += (s[i] - '0') * scale;
      scale /= 10;
    }
  }
  if (whole == 1 && thousandths != 0) return ValueError("q-value above 1");
  return whole * 1000 + thousandths;
}

bool IsValidCallId(std::string_view value) {
  size_t at = value.find('@');
  if (at == std::string_view::npos) return AllOfClass(value, kWordChar);
  return AllOfClass(value.substr(0, at), kWordChar) && AllOfClass(value.substr(at + 1), kWordChar);
}

bool IsValidSipDate(std::string_view value) {
  // "Sat, 13 Nov 2010 23:29:00 GMT"
  std::string_view s = TrimLws(value);
  if (s.size() != 29) return false;
  static constexpr std::string_view kDays[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
  static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  auto one_of = [](std::string_view text, auto& names) {
    for (std::string_view n : names) {
      if (EqualsIgnoreCase(text, n)) return true;
    }
    return false;
  };
  auto digits = [&](size_t at, size_t count) {
    for (size_t i = at; i < at + count; ++i) {
      if (!IsDigit(s[i])) return false;
    }
    return true;
  };
  return one_of(s.substr(0, 3), kDays) && s.substr(3, 2) == ", " && digits(5, 2) && s[7] == ' ' &&
         one_of(s.substr(8, 3), kMonths) && s[11] == ' ' && digits(12, 4) && s[16] == ' ' &&
         digits(17, 2) && s[19] == ':' && digits(20, 2) && s[22] == ':' && digits(23, 2) &&
         s[25] == ' ' && EqualsIgnoreCase(s.substr(26, 3), "GMT");
}

// ---- authentication ----

std::optional<std::string_view> AuthHeader::Param(std::string_view name) const {
  for (const AuthParam& p : params) {
    if (EqualsIgnoreCase(p.name, name)) return p.value;
  }
  return std::nullopt;
}

Result<AuthHeader> ParseAuthHeader(std::string_view value) {
  constexpr size_t kMaxParams = 64;
  std::string_view s = TrimLws(value);
  AuthHeader out;
  size_t pos = ScanClass(s, 0, kToken);
  if (pos == 0) return ValueError("missing authentication scheme");
  out.scheme = s.substr(0, pos);
  if (pos < s.size() && !IsLws(s[pos])) return ValueError("malformed authentication scheme");
  pos = SkipLws(s, pos);
  // token68: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
  {
    size_t p = pos;
    while (p < s.size() && (IsClass(s[p], kAlnum) || s[p] == '-' || s[p] == '.' || s[p] == '_' ||
                            s[p] == '~' || s[p] == '+' || s[p] == '/')) {
      ++p;
    }
    size_t body_end = p;
    while (p < s.size() && s[p] == '=') ++p;
    if (body_end > pos && p == s.size() && (p > body_end || body_end == s.size())) {
      // Either "abc==" or a lone token: a lone token without '=' is token68 too.
      out.token68 = s.substr(pos);
      return out;
    }
  }
  while (pos < s.size()) {
    if (s[pos] == ',') {  // empty list elements are allowed (RFC 7230 #rule)
      pos = SkipLws(s, pos + 1);
      continue;
    }
    size_t name_start = pos;
    pos = ScanClass(s, pos, kToken);
    if (pos == name_start) return ValueError("malformed auth-param name");
    AuthParam param;
    param.name = s.substr(name_start, pos - name_start);
    pos = SkipLws(s, pos);
    if (pos >= s.size() || s[pos] != '=') return ValueError("auth-param lacks '='");
    pos = SkipLws(s, pos + 1);
    if (pos < s.size() && s[pos] == '"') {
      std::optional<size_t> end = ScanQuotedString(s, pos);
      if (!end) return ValueError("unterminated quoted auth-param");
      param.value = s.substr(pos + 1, *end - pos - 2);
      param.quoted = true;
      pos = *end;
    } else {
      size_t value_start = pos;
      while (pos < s.size() && s[pos] != ',' && !IsLws(s[pos]) && s[pos] != '"') ++pos;
      if (pos == value_start) return ValueError("empty auth-param value");
      param.value = s.substr(value_start, pos - value_start);
    }
    if (out.params.size() >= kMaxParams) return ValueError("too many auth-params");
    out.params.push_back(param);
    pos = SkipLws(s, pos);
    if (pos < s.size()) {
      if (s[pos] != ',') return ValueError("auth-params must be separated by ','");
      pos = SkipLws(s, pos + 1);
    }
  }
  return out;
}

}  // namespace tandem::sip
