// Well-known SIP names: header field identifiers (with RFC 3261 compact forms),
// request methods and the default reason phrases of status codes. The parser tags
// every header with a HeaderId so lookups compare one byte instead of a string.
//
// Thread-safety: pure functions over static tables; safe from any thread.
#pragma once

#include <cstdint>
#include <string_view>

namespace tandem::sip {

enum class HeaderId : uint8_t {
  kUnknown = 0,
  kAccept,
  kAcceptEncoding,
  kAcceptLanguage,
  kAlertInfo,
  kAllow,
  kAllowEvents,         // u
  kAuthenticationInfo,
  kAuthorization,
  kCallId,              // i
  kCallInfo,
  kContact,             // m
  kContentDisposition,
  kContentEncoding,     // e
  kContentLanguage,
  kContentLength,       // l
  kContentType,         // c
  kCSeq,
  kDate,
  kErrorInfo,
  kEvent,               // o
  kExpires,
  kFrom,                // f
  kInReplyTo,
  kMaxForwards,
  kMimeVersion,
  kMinExpires,
  kMinSe,
  kOrganization,
  kPAssertedIdentity,
  kPPreferredIdentity,
  kPath,
  kPriority,
  kPrivacy,
  kProxyAuthenticate,
  kProxyAuthorization,
  kProxyRequire,
  kRAck,
  kReason,
  kRecordRoute,
  kReferTo,             // r
  kReferredBy,          // b
  kReplyTo,
  kRequire,
  kRetryAfter,
  kRoute,
  kRSeq,
  kServer,
  kServiceRoute,
  kSessionExpires,      // x
  kSipETag,
  kSipIfMatch,
  kSubject,             // s
  kSubscriptionState,
  kSupported,           // k
  kTimestamp,
  kTo,                  // t
  kUnsupported,
  kUserAgent,
  kVia,                 // v
  kWarning,
  kWwwAuthenticate,
  kCount,               // not a header; the number of ids
};

// Maps a header name (any case, long or compact form) to its id; kUnknown for
// extension headers.
HeaderId HeaderIdFromName(std::string_view name);
// The long name as RFC 3261 spells it ("Call-ID", "CSeq", "WWW-Authenticate");
// empty for kUnknown.
std::string_view CanonicalHeaderName(HeaderId id);
// True for headers whose grammar is a comma-separated list (Via, Contact, Route,
// Record-Route, Allow, Supported, ...). Headers such as Date or WWW-Authenticate
// hold commas that are not separators and are never split.
bool IsListHeader(HeaderId id);

enum class Method : uint8_t {
  kUnknown = 0,
  kAck,
  kBye,
  kCancel,
  kInfo,
  kInvite,
  kMessage,
  kNotify,
  kOptions,
  kPrack,
  kPublish,
  kRefer,
  kRegister,
  kSubscribe,
  kUpdate,
};

// Methods are case-sensitive (RFC 3261 7.1): "invite" is an unknown method.
Method MethodFromName(std::string_view name);
std::string_view MethodName(Method method);  // empty for kUnknown

// The reason phrase RFC 3261 (and extensions) give a status code; a generic one
// for the class ("Client Error") when the code is not known.
std::string_view DefaultReasonPhrase(int status_code);

}  // namespace tandem::sip
