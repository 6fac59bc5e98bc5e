#include "auth/digest.h"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <array>
#include <charconv>
#include <memory>
#include <utility>
#include <vector>

namespace tandem {
namespace {

constexpr size_t kMaxParameters = 64;
constexpr size_t kMaxResponseHexLength = 128;

char LowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string LowerAscii(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = LowerAscii(c);
  return out;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (LowerAscii(a[i]) != LowerAscii(b[i])) return false;
  }
  return true;
}

bool IsHexDigit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool IsAllHex(std::string_view s) {
  for (char c : s) {
    if (!IsHexDigit(c)) return false;
  }
  return true;
}

// RFC 3261 token characters.
bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '-':
    case '.':
    case '!':
    case '%':
    case '*':
    case '_':
    case '+':
    case '`':
    case '\'':
    case '~':
      return true;
    default:
      return false;
  }
}

// Linear white space; CR and LF are accepted so that folded lines parse.
bool IsLws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

bool IsControl(char c) {
  auto u = static_cast<unsigned char>(c);
  return (u < 0x20 && c != '\t') || u == 0x7f;
}

std::string_view TrimLws(std::string_view s) {
  while (!s.empty() && IsLws(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsLws(s.back())) s.remove_suffix(1);
  return s;
}

const EVP_MD* MessageDigest(DigestAlgorithm algorithm) {
  // Fetched once: with OpenSSL 3, EVP_md5()/EVP_sha256() make every EVP_DigestInit_ex
  // look the implementation up again in the provider store (under its lock).
  static const EVP_MD* const md5 = EVP_MD_fetch(nullptr, "MD5", nullptr);
  static const EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  const EVP_MD* fetched = algorithm == DigestAlgorithm::kSha256 ? sha256 : md5;
  if (fetched != nullptr) return fetched;
  return algorithm == DigestAlgorithm::kSha256 ? EVP_sha256() : EVP_md5();
}

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

// H(parts[0] ":" parts[1] ":" ...) in lowercase hex.
Result<std::string> HashHex(DigestAlgorithm algorithm,
                            std::initializer_list<std::string_view> parts) {
  std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
  const EVP_MD* md = MessageDigest(algorithm);
  if (ctx == nullptr || md == nullptr || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1) {
    return MakeError(ErrorCode::kInternal,
                     fmt::format("digest algorithm {} is unavailable in OpenSSL",
                                 DigestAlgorithmName(algorithm)));
  }
  bool first = true;
  for (std::string_view part : parts) {
    if (!first && EVP_DigestUpdate(ctx.get(), ":", 1) != 1) {
      return MakeError(ErrorCode::kInternal, "EVP_DigestUpdate failed");
    }
    first = false;
    if (!part.empty() && EVP_DigestUpdate(ctx.get(), part.data(), part.size()) != 1) {
      return MakeError(ErrorCode::kInternal, "EVP_DigestUpdate failed");
    }
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(ctx.get(), digest.data(), &length) != 1) {
    return MakeError(ErrorCode::kInternal, "EVP_DigestFinal_ex failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0x0f]);
  }
  return hex;
}

// A small scanner over the header value.
class Scanner {
 public:
  explicit Scanner(std::string_view text) : text_(text) {}

  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek() const { return text_[pos_]; }
  size_t pos() const { return pos_; }
  void Advance() { ++pos_; }

  // Returns true if any white space was skipped.
  bool SkipLws() {
    size_t start = pos_;
    while (!AtEnd() && IsLws(Peek())) ++pos_;
    return pos_ != start;
  }

  std::string_view Token() {
    size_t start = pos_;
    while (!AtEnd() && IsTokenChar(Peek())) ++pos_;
    return text_.substr(start, pos_ - start);
  }

  // At an opening quote: reads a quoted-string, unescaping quoted-pairs.
  Result<std::string> QuotedString() {
    size_t start = pos_;
    ++pos_;  // opening quote
    std::string out;
    while (!AtEnd()) {
      char c = Peek();
      ++pos_;
      if (c == '"') return out;
      if (c == '\\') {
        if (AtEnd()) break;
        c = Peek();
        ++pos_;
      }
      if (IsControl(c)) {
        return MakeError(ErrorCode::kInvalidArgument,
                         fmt::format("control character in quoted string at offset {}", pos_ - 1));
      }
      out.push_back(c);
    }
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("unterminated quoted string starting at offset {}", start));
  }

 private:
  std::string_view text_;
  size_t pos_ = 0;
};

struct Parameter {
  std::string name;  // lower-cased
  std::string value;
};

Result<std::vector<Parameter>> ParseParameters(std::string_view value) {
  Scanner scanner(value);
  scanner.SkipLws();
  std::string_view scheme = scanner.Token();
  if (!EqualsIgnoreCase(scheme, "Digest")) {
    return MakeError(ErrorCode::kInvalidArgument, "credentials are not of the Digest scheme");
  }
  if (!scanner.AtEnd() && !scanner.SkipLws()) {
    return MakeError(ErrorCode::kInvalidArgument, "expected white space after \"Digest\"");
  }
  std::vector<Parameter> params;
  while (true) {
    scanner.SkipLws();
    if (scanner.AtEnd()) break;
    if (scanner.Peek() == ',') {  // an empty list element, allowed by the #rule
      scanner.Advance();
      continue;
    }
    size_t name_offset = scanner.pos();
    std::string_view name = scanner.Token();
    if (name.empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       fmt::format("expected a parameter name at offset {}", name_offset));
    }
    scanner.SkipLws();
    if (scanner.AtEnd() || scanner.Peek() != '=') {
      return MakeError(ErrorCode::kInvalidArgument,
                       fmt::format("expected '=' after parameter at offset {}", name_offset));
    }
    scanner.Advance();
    scanner.SkipLws();
    std::string param_value;
    if (!scanner.AtEnd() && scanner.Peek() == '"') {
      Result<std::string> quoted = scanner.QuotedString();
      if (!quoted) return std::unexpected(std::move(quoted.error()));
      param_value = std::move(*quoted);
    } else {
      std::string_view token = scanner.Token();
      if (token.empty()) {
        return MakeError(ErrorCode::kInvalidArgument,
                         fmt::format("expected a value for parameter at offset {}", name_offset));
      }
      param_value = std::string(token);
    }
    std::string lower_name = LowerAscii(name);
    for (const Parameter& existing : params) {
      if (existing.name == lower_name) {
        return MakeError(ErrorCode::kInvalidArgument,
                         fmt::format("duplicated parameter \"{}\"", lower_name));
      }
    }
    if (params.size() >= kMaxParameters) {
      return MakeError(ErrorCode::kInvalidArgument, "too many parameters");
    }
    params.push_back(Parameter{std::move(lower_name), std::move(param_value)});
    scanner.SkipLws();
    if (scanner.AtEnd()) break;
    if (scanner.Peek() != ',') {
      return MakeError(ErrorCode::kInvalidArgument,
                       fmt::format("expected ',' at offset {}", scanner.pos()));
    }
    scanner.Advance();
  }
  return params;
}

void AppendQuoted(std::string& out, std::string_view value) {
  out.push_back('"');
  for (char c : value) {
    if (IsControl(c)) continue;
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
}

// The parts of a sip:/sips: URI that RFC 3261 §19.1.4 compares.
struct SipUriParts {
  std::optional<std::string_view> userinfo;
  std::string host;  // lower-cased
  std::string_view port;
  std::vector<std::pair<std::string, std::string>> params;  // lower-cased
  std::string_view headers;
};

SipUriParts SplitSipUri(std::string_view rest) {
  SipUriParts parts;
  size_t at = rest.find('@');
  if (at != std::string_view::npos) {
    parts.userinfo = rest.substr(0, at);
    rest.remove_prefix(at + 1);
  }
  size_t question = rest.find('?');
  if (question != std::string_view::npos) {
    parts.headers = rest.substr(question + 1);
    rest = rest.substr(0, question);
  }
  size_t semicolon = rest.find(';');
  std::string_view hostport = rest.substr(0, semicolon);
  std::string_view params =
      semicolon == std::string_view::npos ? std::string_view() : rest.substr(semicolon + 1);
  size_t bracket = hostport.rfind(']');
  size_t colon = hostport.rfind(':');
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    parts.port = hostport.substr(colon + 1);
    hostport = hostport.substr(0, colon);
  }
  parts.host = LowerAscii(hostport);
  while (!params.empty()) {
    size_t next = params.find(';');
    std::string_view param = params.substr(0, next);
    params = next == std::string_view::npos ? std::string_view() : params.substr(next + 1);
    if (param.empty()) continue;
    size_t eq = param.find('=');
    std::string name = LowerAscii(param.substr(0, eq));
    std::string value =
        eq == std::string_view::npos ? std::string() : LowerAscii(param.substr(eq + 1));
    parts.params.emplace_back(std::move(name), std::move(value));
  }
  return parts;
}

const std::string* FindParam(const SipUriParts& parts, std::string_view name) {
  for (const auto& [param_name, value] : parts.params) {
    if (param_name == name) return &value;
  }
  return nullptr;
}

bool ParamsMatchOneWay(const SipUriParts& a, const SipUriParts& b) {
  for (const auto& [name, value] : a.params) {
    const std::string* other = FindParam(b, name);
    if (other != nullptr) {
      if (*other != value) return false;
    } else if (name == "user" || name == "ttl" || name == "method" || name == "maddr" ||
               name == "transport") {
      return false;
    }
  }
  return true;
}

std::string_view StripUriDecoration(std::string_view uri) {
  uri = TrimLws(uri);
  if (uri.size() >= 2 && uri.front() == '<' && uri.back() == '>') {
    uri = TrimLws(uri.substr(1, uri.size() - 2));
  }
  return uri;
}

}  // namespace

std::string_view DigestAlgorithmName(DigestAlgorithm algorithm) {
  switch (algorithm) {
    case DigestAlgorithm::kMd5:
      return "MD5";
    case DigestAlgorithm::kSha256:
      return "SHA-256";
  }
  return "MD5";
}

std::optional<DigestAlgorithm> ParseDigestAlgorithm(std::string_view token) {
  if (token.empty() || EqualsIgnoreCase(token, "MD5")) return DigestAlgorithm::kMd5;
  if (EqualsIgnoreCase(token, "SHA-256")) return DigestAlgorithm::kSha256;
  return std::nullopt;
}

Result<std::string> ComputeHa1(std::string_view username, std::string_view realm,
                               std::string_view password, DigestAlgorithm algorithm) {
  return HashHex(algorithm, {username, realm, password});
}

Result<std::string> ComputeResponse(std::string_view ha1, std::string_view nonce,
                                    std::string_view nc, std::string_view cnonce,
                                    std::string_view qop, std::string_view method,
                                    std::string_view digest_uri, DigestAlgorithm algorithm) {
  Result<std::string> ha2 = HashHex(algorithm, {method, digest_uri});
  if (!ha2) return ha2;
  std::string lower_ha1 = LowerAscii(ha1);
  if (qop.empty()) return HashHex(algorithm, {lower_ha1, nonce, *ha2});
  return HashHex(algorithm, {lower_ha1, nonce, nc, cnonce, qop, *ha2});
}

bool DigestsEqual(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(LowerAscii(a[i]) ^ LowerAscii(b[i]));
  }
  return diff == 0;
}

bool HasDigestScheme(std::string_view value) {
  Scanner scanner(value);
  scanner.SkipLws();
  return EqualsIgnoreCase(scanner.Token(), "Digest");
}

Result<DigestCredentials> ParseDigestCredentials(std::string_view value) {
  if (value.size() > kMaxAuthorizationValueLength) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("credentials longer than {} bytes", kMaxAuthorizationValueLength));
  }
  Result<std::vector<Parameter>> params = ParseParameters(value);
  if (!params) return std::unexpected(std::move(params.error()));

  DigestCredentials creds;
  bool has_username = false, has_realm = false, has_nonce = false, has_uri = false;
  bool has_response = false, has_cnonce = false, has_qop = false, has_nc = false;
  for (Parameter& param : *params) {
    const std::string& name = param.name;
    if (name == "username") {
      creds.username = std::move(param.value);
      has_username = true;
    } else if (name == "realm") {
      creds.realm = std::move(param.value);
      has_realm = true;
    } else if (name == "nonce") {
      creds.nonce = std::move(param.value);
      has_nonce = true;
    } else if (name == "uri") {
      creds.uri = std::move(param.value);
      has_uri = true;
    } else if (name == "response") {
      if (param.value.empty() || param.value.size() > kMaxResponseHexLength ||
          !IsAllHex(param.value)) {
        return MakeError(ErrorCode::kInvalidArgument, "response is not a hex digest");
      }
      creds.response = LowerAscii(param.value);
      has_response = true;
    } else if (name == "algorithm") {
      creds.algorithm = std::move(param.value);
    } else if (name == "cnonce") {
      creds.cnonce = std::move(param.value);
      has_cnonce = true;
    } else if (name == "opaque") {
      creds.opaque = std::move(param.value);
    } else if (name == "qop") {
      if (param.value.empty()) return MakeError(ErrorCode::kInvalidArgument, "empty qop");
      creds.qop = LowerAscii(param.value);
      has_qop = true;
    } else if (name == "nc") {
      if (param.value.size() != 8 || !IsAllHex(param.value)) {
        return MakeError(ErrorCode::kInvalidArgument, "nc is not 8 hex digits");
      }
      std::from_chars(param.value.data(), param.value.data() + param.value.size(),
                      creds.nonce_count, 16);
      creds.nc = std::move(param.value);
      has_nc = true;
    } else if (name == "userhash") {
      if (EqualsIgnoreCase(param.value, "true")) {
        creds.userhash = true;
      } else if (!EqualsIgnoreCase(param.value, "false")) {
        return MakeError(ErrorCode::kInvalidArgument, "userhash is neither true nor false");
      }
    }
    // Other parameters (username*, auth-params of extensions) are ignored.
  }
  if (!has_username) return MakeError(ErrorCode::kInvalidArgument, "missing username");
  if (!has_realm) return MakeError(ErrorCode::kInvalidArgument, "missing realm");
  if (!has_nonce) return MakeError(ErrorCode::kInvalidArgument, "missing nonce");
  if (!has_uri) return MakeError(ErrorCode::kInvalidArgument, "missing uri");
  if (!has_response) return MakeError(ErrorCode::kInvalidArgument, "missing response");
  if (has_qop && (!has_cnonce || !has_nc)) {
    return MakeError(ErrorCode::kInvalidArgument, "qop without cnonce and nc");
  }
  if (!has_qop && (has_cnonce || has_nc)) {
    return MakeError(ErrorCode::kInvalidArgument, "cnonce or nc without qop");
  }
  return creds;
}

std::string BuildChallenge(const DigestChallenge& challenge) {
  std::string out = "Digest realm=";
  AppendQuoted(out, challenge.realm);
  out += ", nonce=";
  AppendQuoted(out, challenge.nonce);
  if (!challenge.opaque.empty()) {
    out += ", opaque=";
    AppendQuoted(out, challenge.opaque);
  }
  out += ", algorithm=";
  out += DigestAlgorithmName(challenge.algorithm);
  if (challenge.qop_auth) out += ", qop=\"auth\"";
  if (challenge.stale) out += ", stale=true";
  return out;
}

bool DigestUriMatches(std::string_view digest_uri, std::string_view request_uri) {
  std::string_view a = StripUriDecoration(digest_uri);
  std::string_view b = StripUriDecoration(request_uri);
  size_t a_colon = a.find(':');
  size_t b_colon = b.find(':');
  if (a_colon == std::string_view::npos || b_colon == std::string_view::npos) return a == b;
  std::string_view scheme = a.substr(0, a_colon);
  if (!EqualsIgnoreCase(scheme, b.substr(0, b_colon))) return false;
  std::string_view a_rest = a.substr(a_colon + 1);
  std::string_view b_rest = b.substr(b_colon + 1);
  if (!EqualsIgnoreCase(scheme, "sip") && !EqualsIgnoreCase(scheme, "sips")) {
    return a_rest == b_rest;
  }
  SipUriParts pa = SplitSipUri(a_rest);
  SipUriParts pb = SplitSipUri(b_rest);
  return pa.userinfo == pb.userinfo && pa.host == pb.host && !pa.host.empty() &&
         pa.port == pb.port && pa.headers == pb.headers && ParamsMatchOneWay(pa, pb) &&
         ParamsMatchOneWay(pb, pa);
}

}  // namespace tandem
