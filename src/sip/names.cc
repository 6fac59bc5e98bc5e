#include "sip/names.h"

#include <array>

#include "sip/syntax.h"

namespace tandem::sip {
namespace {

struct HeaderInfo {
  HeaderId id;
  std::string_view name;
  char compact;  // 0 if none
  bool list;
};

constexpr HeaderInfo kHeaders[] = {
    {HeaderId::kAccept, "Accept", 0, true},
    {HeaderId::kAcceptEncoding, "Accept-Encoding", 0, true},
    {HeaderId::kAcceptLanguage, "Accept-Language", 0, true},
    {HeaderId::kAlertInfo, "Alert-Info", 0, true},
    {HeaderId::kAllow, "Allow", 0, true},
    {HeaderId::kAllowEvents, "Allow-Events", 'u', true},
    {HeaderId::kAuthenticationInfo, "Authentication-Info", 0, false},
    {HeaderId::kAuthorization, "Authorization", 0, false},
    {HeaderId::kCallId, "Call-ID", 'i', false},
    {HeaderId::kCallInfo, "Call-Info", 0, true},
    {HeaderId::kContact, "Contact", 'm', true},
    {HeaderId::kContentDisposition, "Content-Disposition", 0, false},
    {HeaderId::kContentEncoding, "Content-Encoding", 'e', true},
    {HeaderId::kContentLanguage, "Content-Language", 0, true},
    {HeaderId::kContentLength, "Content-Length", 'l', false},
    {HeaderId::kContentType, "Content-Type", 'c', false},
    {HeaderId::kCSeq, "CSeq", 0, false},
    {HeaderId::kDate, "Date", 0, false},
    {HeaderId::kErrorInfo, "Error-Info", 0, true},
    {HeaderId::kEvent, "Event", 'o', false},
    {HeaderId::kExpires, "Expires", 0, false},
    {HeaderId::kFrom, "From", 'f', false},
    {HeaderId::kInReplyTo, "In-Reply-To", 0, true},
    {HeaderId::kMaxForwards, "Max-Forwards", 0, false},
    {HeaderId::kMimeVersion, "MIME-Version", 0, false},
    {HeaderId::kMinExpires, "Min-Expires", 0, false},
    {HeaderId::kMinSe, "Min-SE", 0, false},
    {HeaderId::kOrganization, "Organization", 0, false},
    {HeaderId::kPAssertedIdentity, "P-Asserted-Identity", 0, true},
    {HeaderId::kPPreferredIdentity, "P-Preferred-Identity", 0, true},
    {HeaderId::kPath, "Path", 0, true},
    {HeaderId::kPriority, "Priority", 0, false},
    {HeaderId::kPrivacy, "Privacy", 0, false},
    {HeaderId::kProxyAuthenticate, "Proxy-Authenticate", 0, false},
    {HeaderId::kProxyAuthorization, "Proxy-Authorization", 0, false},
    {HeaderId::kProxyRequire, "Proxy-Require", 0, true},
    {HeaderId::kRAck, "RAck", 0, false},
    {HeaderId::kReason, "Reason", 0, true},
    {HeaderId::kRecordRoute, "Record-Route", 0, true},
    {HeaderId::kReferTo, "Refer-To", 'r', false},
    {HeaderId::kReferredBy, "Referred-By", 'b', false},
    {HeaderId::kReplyTo, "Reply-To", 0, false},
    {HeaderId::kRequire, "Require", 0, true},
    {HeaderId::kRetryAfter, "Retry-After", 0, false},
    {HeaderId::kRoute, "Route", 0, true},
    {HeaderId::kRSeq, "RSeq", 0, false},
    {HeaderId::kServer, "Server", 0, false},
    {HeaderId::kServiceRoute, "Service-Route", 0, true},
    {HeaderId::kSessionExpires, "Session-Expires", 'x', false},
    {HeaderId::kSipETag, "SIP-ETag", 0, false},
    {HeaderId::kSipIfMatch, "SIP-If-Match", 0, false},
    {HeaderId::kSubject, "Subject", 's', false},
    {HeaderId::kSubscriptionState, "Subscription-State", 0, false},
    {HeaderId::kSupported, "Supported", 'k', true},
    {HeaderId::kTimestamp, "Timestamp", 0, false},
    {HeaderId::kTo, "To", 't', false},
    {HeaderId::kUnsupported, "Unsupported", 0, true},
    {HeaderId::kUserAgent, "User-Agent", 0, false},
    {HeaderId::kVia, "Via", 'v', true},
    {HeaderId::kWarning, "Warning", 0, true},
    {HeaderId::kWwwAuthenticate, "WWW-Authenticate", 0, false},
};
static_assert(std::size(kHeaders) + 1 == static_cast<size_t>(HeaderId::kCount));

constexpr size_t kMaxNameLength = 24;
constexpr size_t kMaxBucket = 4;

// Names bucketed by (length, lower-case first letter): a lookup compares against
// one candidate in the common case.
struct Bucket {
  uint8_t count = 0;
  uint8_t index[kMaxBucket] = {};
};

struct Tables {
  HeaderId compact[26] = {};
  Bucket buckets[kMaxNameLength + 1][26] = {};
  HeaderInfo by_id[static_cast<size_t>(HeaderId::kCount)] = {};
};

constexpr char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

constexpr Tables BuildTables() {
  Tables t{};
  for (size_t i = 0; i < std::size(kHeaders); ++i) {
    const HeaderInfo& h = kHeaders[i];
    if (h.compact != 0) t.compact[h.compact - 'a'] = h.id;
    Bucket& b = t.buckets[h.name.size()][Lower(h.name[0]) - 'a'];
    b.index[b.count++] = static_cast<uint8_t>(i);  // a compile error if a bucket overflows
    t.by_id[static_cast<size_t>(h.id)] = h;
  }
  return t;
}

constexpr Tables kTables = BuildTables();

}  // namespace

HeaderId HeaderIdFromName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return HeaderId::kUnknown;
  char first = ToLowerAscii(name[0]);
  if (first < 'a' || first > 'z') return HeaderId::kUnknown;
  if (name.size() == 1) return kTables.compact[first - 'a'];
  const Bucket& bucket = kTables.buckets[name.size()][first - 'a'];
  for (size_t i = 0; i < bucket.count; ++i) {
    const HeaderInfo& h = kHeaders[bucket.index[i]];
    if (EqualsIgnoreCase(h.name.substr(1), name.substr(1))) return h.id;
  }
  return HeaderId::kUnknown;
}

std::string_view CanonicalHeaderName(HeaderId id) {
  if (id == HeaderId::kUnknown || id >= HeaderId::kCount) return {};
  return kTables.by_id[static_cast<size_t>(id)].name;
}

bool IsListHeader(HeaderId id) {
  if (id == HeaderId::kUnknown || id >= HeaderId::kCount) return false;
  return kTables.by_id[static_cast<size_t>(id)].list;
}

Method MethodFromName(std::string_view name) {
  switch (name.size()) {
    case 3:
      if (name == "ACK") return Method::kAck;
      if (name == "BYE") return Method::kBye;
      break;
    case 4:
      if (name == "INFO") return Method::kInfo;
      break;
    case 5:
      if (name == "PRACK") return Method::kPrack;
      if (name == "REFER") return Method::kRefer;
      break;
    case 6:
      if (name == "CANCEL") return Method::kCancel;
      if (name == "INVITE") return Method::kInvite;
      if (name == "NOTIFY") return Method::kNotify;
      if (name == "UPDATE") return Method::kUpdate;
      break;
    case 7:
      if (name == "MESSAGE") return Method::kMessage;
      if (name == "OPTIONS") return Method::kOptions;
      if (name == "PUBLISH") return Method::kPublish;
      break;
    case 8:
      if (name == "REGISTER") return Method::kRegister;
      break;
    case 9:
      if (name == "SUBSCRIBE") return Method::kSubscribe;
      break;
    default:
      break;
  }
  return Method::kUnknown;
}

std::string_view MethodName(Method method) {
  switch (method) {
    case Method::kAck: return "ACK";
    case Method::kBye: return "BYE";
    case Method::kCancel: return "CANCEL";
    case Method::kInfo: return "INFO";
    case Method::kInvite: return "INVITE";
    case Method::kMessage: return "MESSAGE";
    case Method::kNotify: return "NOTIFY";
    case Method::kOptions: return "OPTIONS";
    case Method::kPrack: return "PRACK";
    case Method::kPublish: return "PUBLISH";
    case Method::kRefer: return "REFER";
    case Method::kRegister: return "REGISTER";
    case Method::kSubscribe: return "SUBSCRIBE";
    case Method::kUpdate: return "UPDATE";
    case Method::kUnknown: break;
  }
  return {};
}

std::string_view DefaultReasonPhrase(int status_code) {
  switch (status_code) {
    case 100: return "Trying";
    case 180: return "Ringing";
    case 181: return "Call Is Being Forwarded";
    case 182: return "Queued";
    case 183: return "Session Progress";
    case 199: return "Early Dialog Terminated";
    case 200: return "OK";
    case 202: return "Accepted";
    case 204: return "No Notification";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Moved Temporarily";
    case 305: return "Use Proxy";
    case 380: return "Alternative Service";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 410: return "Gone";
    case 412: return "Conditional Request Failed";
    case 413: return "Request Entity Too Large";
    case 414: return "Request-URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Unsupported URI Scheme";
    case 420: return "Bad Extension";
    case 421: return "Extension Required";
    case 422: return "Session Interval Too Small";
    case 423: return "Interval Too Brief";
    case 429: return "Provide Referrer Identity";
    case 480: return "Temporarily Unavailable";
    case 481: return "Call/Transaction Does Not Exist";
    case 482: return "Loop Detected";
    case 483: return "Too Many Hops";
    case 484: return "Address Incomplete";
    case 485: return "Ambiguous";
    case 486: return "Busy Here";
    case 487: return "Request Terminated";
    case 488: return "Not Acceptable Here";
    case 489: return "Bad Event";
    case 491: return "Request Pending";
    case 493: return "Undecipherable";
    case 500: return "Server Internal Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Server Time-out";
    case 505: return "Version Not Supported";
    case 513: return "Message Too Large";
    case 600: return "Busy Everywhere";
    case 603: return "Decline";
    case 604: return "Does Not Exist Anywhere";
    case 606: return "Not Acceptable";
    default: break;
  }
  switch (status_code / 100) {
    case 1: return "Provisional";
    case 2: return "Success";
    case 3: return "Redirection";
    case 4: return "Client Error";
    case 5: return "Server Error";
    case 6: return "Global Failure";
    default: return "Unknown";
  }
}

}  // namespace tandem::sip
