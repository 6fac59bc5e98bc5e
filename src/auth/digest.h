// HTTP/SIP Digest authentication primitives (RFC 3261 §22, RFC 2617, RFC 7616,
// RFC 8760): HA1/response computation with MD5 and SHA-256 (qop=auth, and the
// RFC 2069 form without qop), parsing of an Authorization / Proxy-Authorization
// header value, building a WWW-Authenticate / Proxy-Authenticate value, and the
// digest-uri vs Request-URI comparison.
//
// Independent of the SIP parser: takes already-split header values as strings.
// Parsing treats its input as untrusted: any byte sequence yields either
// credentials or an Error, never an exception or a crash.
//
// Thread-safety: free functions without shared state; safe from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"

namespace tandem {

enum class DigestAlgorithm { kMd5, kSha256 };

// "MD5" or "SHA-256", as written in the algorithm= parameter.
std::string_view DigestAlgorithmName(DigestAlgorithm algorithm);

// The algorithm= token (case-insensitive). An empty token means MD5 (RFC 2617
// default). nullopt for anything unsupported, including the -sess variants.
std::optional<DigestAlgorithm> ParseDigestAlgorithm(std::string_view token);

// HA1 = H(username ":" realm ":" password), lowercase hex (32 chars for MD5, 64
// for SHA-256). Errors only if the hash is unavailable in this OpenSSL build.
Result<std::string> ComputeHa1(std::string_view username, std::string_view realm,
                               std::string_view password, DigestAlgorithm algorithm);

// The request-digest, lowercase hex:
//   qop non-empty: H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2)
//   qop empty:     H(HA1 ":" nonce ":" HA2)            (RFC 2069; nc, cnonce unused)
// with HA2 = H(method ":" digest_uri) (qop=auth). `ha1` is hex as from
// ComputeHa1; upper-case hex is accepted and lowered first.
Result<std::string> ComputeResponse(std::string_view ha1, std::string_view nonce,
                                    std::string_view nc, std::string_view cnonce,
                                    std::string_view qop, std::string_view method,
                                    std::string_view digest_uri, DigestAlgorithm algorithm);

// Constant-time comparison of two hex digests, ignoring ASCII case.
bool DigestsEqual(std::string_view a, std::string_view b);

// The longest Authorization value ParseDigestCredentials accepts.
inline constexpr size_t kMaxAuthorizationValueLength = 8192;

// The parameters of a `Digest` Authorization / Proxy-Authorization value.
// Strings hold unquoted, unescaped values.
struct DigestCredentials {
  std::string username;
  std::string realm;
  std::string nonce;
  std::string uri;           // the digest-uri, as sent
  std::string response;      // request-digest, lower-cased hex
  std::string algorithm;     // as sent; empty if absent (means MD5)
  std::string cnonce;        // empty when qop is absent
  std::string opaque;        // empty if absent
  std::string qop;           // lower-cased ("auth", "auth-int", ...); empty = RFC 2069
  std::string nc;            // 8 hex digits as sent; empty when qop is absent
  uint32_t nonce_count = 0;  // nc as a number
  bool userhash = false;     // userhash=true (RFC 7616); not supported by tandem
};

// True if `value` starts (after whitespace) with the scheme token "Digest",
// case-insensitively. Lets a caller tell "another scheme" (e.g. Basic) from
// "malformed Digest".
bool HasDigestScheme(std::string_view value);

// Parses an Authorization / Proxy-Authorization header value such as
//   Digest username="alice", realm="example.com", nonce="...", uri="sip:example.com",
//          response="...", algorithm=MD5, cnonce="...", qop=auth, nc=00000001
// kInvalidArgument for: another scheme, bad syntax (unterminated quotes, bad
// tokens, control characters), a duplicated parameter, a missing username /
// realm / nonce / uri / response, qop without cnonce or nc (or nc/cnonce without
// qop), nc that is not 8 hex digits, response that is not hex, or a value longer
// than kMaxAuthorizationValueLength. Unknown parameters are ignored (RFC 7616).
Result<DigestCredentials> ParseDigestCredentials(std::string_view value);

// What goes into one WWW-Authenticate / Proxy-Authenticate value.
struct DigestChallenge {
  std::string realm;
  std::string nonce;
  DigestAlgorithm algorithm = DigestAlgorithm::kMd5;
  std::string opaque;    // omitted when empty
  bool qop_auth = true;  // qop="auth"
  bool stale = false;    // stale=true
};

// E.g. `Digest realm="example.com", nonce="...", opaque="...", algorithm=SHA-256,
// qop="auth", stale=true`. Quotes and backslashes in realm/nonce/opaque are
// escaped; control characters (which could split the header) are dropped.
std::string BuildChallenge(const DigestChallenge& challenge);

// Whether the digest-uri of the credentials designates the Request-URI
// (RFC 3261 §22.4 / RFC 7616 §3.4.6). Both are trimmed of whitespace and of
// enclosing <>. sip:/sips: URIs are compared by RFC 3261 §19.1.4 rules (scheme
// and host case-insensitive, user and password exact, port exact, uri-parameters
// present in both compared case-insensitively, user/ttl/method/maddr/transport
// must match if present in either, other parameters present in only one
// ignored, headers exact). Other URIs are compared exactly, scheme ignoring case.
bool DigestUriMatches(std::string_view digest_uri, std::string_view request_uri);

}  // namespace tandem
