// Serving an admin request in the pool that homes its subject — a user, or a
// meeting (homed with its organizer) — and the request helpers the user-data and
// conference routes share (JSON bodies, errors, query parameters).
//
// Routing rule, for a request about one subject. A pool serves the subjects homed
// in it, unless a pool failover moved them to its backup pool (the CMS's DR routing
// state), which then serves them:
//   - the subject is served here: serve it here, except that a change (any method
//     but GET) is refused while persistent changes for its home pool are refused
//     (PersistentChangesRefusedKey: during a pool failover or failback);
//   - this pool serves the subject's home pool in resiliency mode (its pool is
//     unreachable, not failed over): reads are served from the copy here, changes
//     are refused with the reason (503);
//   - the request names a pool (`pool=FQDN`): that pool answers for itself only —
//     here if it is this pool (404 if the subject is not homed here), else forwarded;
//   - the local store knows the subject's home pool: forward to the pool serving it;
//   - otherwise ask every other pool in turn (each answering for itself only) and
//     return the first answer that is not "not homed here".
// Forwarded requests always carry `pool=<target>`, so they never bounce further.
//
// Thread-safety: thread-safe (immutable after construction); borrows the replica,
// which must outlive it.
#pragma once

#include <chrono>
#include <expected>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "admin/http_server.h"
#include "cms/cms_replica.h"
#include "dr/resiliency_monitor.h"
#include "store/store.h"
#include "common/error.h"
#include "topology/topology.h"

namespace tandem {

class HomePoolRouter {
 public:
  // `store` (optional) is the local pool's store, asked whether changes are refused;
  // `resiliency` (optional) says whose users this pool serves in resiliency mode.
  HomePoolRouter(std::string admin_token, CmsReplica& replica, std::string local_pool, Store* store = nullptr,
                 const ResiliencyMonitor* resiliency = nullptr);

  const std::string& local_pool() const { return local_pool_; }
  CmsReplica& replica() const { return replica_; }

  // Applies the routing rule above. `known_home` is the subject's home pool as the
  // local store records it (nullopt: unknown here); `unknown_message` says what was
  // not found ("user sip:x@y is not provisioned"); `serve_here` does the work.
  HttpResponse Route(const HttpRequest& request, const std::optional<std::string>& known_home,
                     std::string_view unknown_message, const std::function<HttpResponse()>& serve_here,
                     std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;

  // Sends `request` (method, path, query with pool=<pool>, body) to any server of
  // `pool`. kUnavailable when no server of the pool answers.
  Result<HttpResponse> Forward(const PoolSpec& pool, const HttpRequest& request,
                               std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;

  // The answer of a pool asked about a subject it does not home: a 404 marked so
  // that a pool asking around moves on to the next one.
  static HttpResponse NotHomedHere(std::string_view message);
  static bool IsNotHomedHere(const HttpResponse& response);

 private:
  const std::string admin_token_;
  CmsReplica& replica_;
  const std::string local_pool_;
  Store* const store_;
  const ResiliencyMonitor* const resiliency_;
};

// ---- Request helpers ----------------------------------------------------------------
// They fail with the HTTP answer to send back, so handlers just return it.

template <typename T>
using HttpResult = std::expected<T, HttpResponse>;

// JSON text that never throws (invalid UTF-8 is replaced, not fatal).
std::string DumpJson(const nlohmann::json& value);
// {"error": message} with `status`; safe for any bytes in `message`.
HttpResponse ApiError(int status, std::string_view message);
// The HTTP status of a store error: kInvalidArgument 422, kNotFound 404,
// kAlreadyExists and kFailedPrecondition 409, kUnavailable 503, others 500.
int HttpStatusFor(const Error& error);
HttpResponse ErrorResponse(const Error& error);

// The body as a JSON object whose keys are all in `allowed`; otherwise 400 naming
// the problem ("the body is not valid JSON", "unknown field 'x'").
HttpResult<nlohmann::json> ParseJsonObject(std::string_view body, const std::vector<std::string_view>& allowed);

// A required query parameter (400 naming it when absent or not UTF-8).
HttpResult<std::string> RequiredQuery(const HttpRequest& request, std::string_view name);
// An optional query parameter (400 when not UTF-8).
HttpResult<std::optional<std::string>> OptionalQuery(const HttpRequest& request, std::string_view name);

// The longest address of record the admin API stores.
inline constexpr size_t kMaxAddressOfRecordBytes = 512;
// ParseAddressOfRecord plus the length limit, as the normalized URI string.
Result<std::string> NormalizedAddressOfRecord(std::string_view uri);

// A SIP address of record, normalized ("sip:alice@example.com"); 422 naming `what`
// ("field 'contact'", "query parameter 'user'") otherwise.
HttpResult<std::string> AddressOfRecordParameter(std::string_view what, std::string_view uri);

// An optional string field of at most `max_bytes` without control characters
// (newlines and tabs allowed when `multiline`); 422 naming the field otherwise.
HttpResult<std::optional<std::string>> OptionalStringField(const nlohmann::json& body, std::string_view field,
                                                           size_t max_bytes, bool multiline = false);
// An optional array of at most `max_items` strings, each passed through `check`
// (which returns the normalized entry or why it is wrong); 422 naming the field
// and the index otherwise.
HttpResult<std::optional<std::vector<std::string>>> OptionalStringListField(
    const nlohmann::json& body, std::string_view field, size_t max_items,
    const std::function<Result<std::string>(std::string_view)>& check);

}  // namespace tandem
