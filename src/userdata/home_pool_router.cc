#include "userdata/home_pool_router.h"

#include <algorithm>

#include <fmt/format.h>

#include "admin/peer_client.h"
#include "store/store.h"
#include "users/user_service.h"

namespace tandem {

using nlohmann::json;

HomePoolRouter::HomePoolRouter(std::string admin_token, CmsReplica& replica, std::string local_pool, Store* store,
                               const ResiliencyMonitor* resiliency)
    : admin_token_(std::move(admin_token)),
      replica_(replica),
      local_pool_(std::move(local_pool)),
      store_(store),
      resiliency_(resiliency) {}

Result<HttpResponse> HomePoolRouter::Forward(const PoolSpec& pool, const HttpRequest& request,
                                             std::chrono::milliseconds timeout) const {
  HttpRequest forwarded = request;
  forwarded.query["pool"] = pool.fqdn;
  return ForwardToPool(pool, forwarded, {.token = admin_token_, .timeout = timeout});
}

HttpResponse HomePoolRouter::Route(const HttpRequest& request, const std::optional<std::string>& known_home,
                                   std::string_view unknown_message, const std::function<HttpResponse()>& serve_here,
                                   std::chrono::milliseconds timeout) const {
  auto snapshot = replica_.Current();
  auto named = request.query.find("pool");
  if (named != request.query.end() && snapshot.topology->FindPool(named->second) == nullptr) {
    return ApiError(422, fmt::format("pool '{}' is not in the topology", named->second));
  }
  if (known_home && resiliency_ != nullptr && request.method == "GET" && resiliency_->ServesInResiliency(*known_home)) {
    return serve_here();
  }
  if (known_home && resiliency_ != nullptr && request.method != "GET") {
    if (auto reason = resiliency_->RefusalReason(*known_home)) return ApiError(503, *reason + "; nothing changed");
  }
  if (known_home && snapshot.document->ServingPoolOf(*known_home) == local_pool_) {
    if (request.method != "GET" && store_ != nullptr) {
      auto refused = store_->GetSetting(PersistentChangesRefusedKey(*known_home));
      if (!refused) return ApiError(503, refused.error().message);
      if (*refused && !(*refused)->empty()) {
        return ApiError(409, fmt::format("changes for users of pool {} are refused: {}; nothing changed", *known_home,
                                         **refused));
      }
    }
    return serve_here();
  }
  auto relay = [](const Result<HttpResponse>& response) {
    return response ? *response : ApiError(503, response.error().message);
  };

  if (named != request.query.end()) {
    if (named->second == local_pool_) return NotHomedHere(fmt::format("{} in pool {}", unknown_message, local_pool_));
    return relay(Forward(*snapshot.topology->FindPool(named->second), request, timeout));
  }

  if (known_home) {
    const PoolSpec* pool = snapshot.topology->FindPool(snapshot.document->ServingPoolOf(*known_home));
    if (pool == nullptr) {
      return ApiError(503, fmt::format("this is homed in pool {}, which is not in the topology", *known_home));
    }
    return relay(Forward(*pool, request, timeout));
  }

  // Unknown here: each other pool answers for itself only.
  std::vector<std::string> unreachable;
  for (const PoolSpec& pool : snapshot.topology->pools) {
    if (pool.fqdn == local_pool_) continue;
    auto response = Forward(pool, request, timeout);
    if (!response) {
      unreachable.push_back(pool.fqdn);
      continue;
    }
    if (!IsNotHomedHere(*response)) return *response;
  }
  if (!unreachable.empty()) {
    std::string pools;
    for (const std::string& fqdn : unreachable) pools += (pools.empty() ? "" : ", ") + fqdn;
    return ApiError(503, fmt::format("{} in pool {}, and pool{} {} did not answer; retry when {} back", unknown_message,
                                     local_pool_, unreachable.size() == 1 ? "" : "s", pools,
                                     unreachable.size() == 1 ? "it is" : "they are"));
  }
  return ApiError(404, fmt::format("{} in any pool", unknown_message));
}

HttpResponse HomePoolRouter::NotHomedHere(std::string_view message) {
  return HttpResponse::Json(404, DumpJson(json{{"error", message}, {"not_homed_here", true}}) + "\n");
}

bool HomePoolRouter::IsNotHomedHere(const HttpResponse& response) {
  if (response.status != 404) return false;
  json body = json::parse(response.body, nullptr, false);
  return body.is_object() && body.contains("not_homed_here") && body["not_homed_here"] == true;
}

std::string DumpJson(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

HttpResponse ApiError(int status, std::string_view message) {
  return HttpResponse::Json(status, DumpJson(json{{"error", message}}) + "\n");
}

int HttpStatusFor(const Error& error) {
  switch (error.code) {
    case ErrorCode::kInvalidArgument: return 422;
    case ErrorCode::kNotFound: return 404;
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kFailedPrecondition: return 409;
    case ErrorCode::kPermissionDenied: return 403;
    case ErrorCode::kUnavailable:
    case ErrorCode::kTimeout: return 503;
    default: return 500;
  }
}

HttpResponse ErrorResponse(const Error& error) { return ApiError(HttpStatusFor(error), error.message); }

HttpResult<json> ParseJsonObject(std::string_view body, const std::vector<std::string_view>& allowed) {
  json parsed = json::parse(body, nullptr, false);
  if (parsed.is_discarded()) return std::unexpected(ApiError(400, "the body is not valid JSON"));
  if (!parsed.is_object()) return std::unexpected(ApiError(400, "the body must be a JSON object"));
  for (const auto& [key, value] : parsed.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return std::unexpected(ApiError(400, fmt::format("unknown field '{}'", key)));
    }
  }
  return parsed;
}

HttpResult<std::optional<std::string>> OptionalQuery(const HttpRequest& request, std::string_view name) {
  auto found = request.query.find(std::string(name));
  if (found == request.query.end()) return std::optional<std::string>();
  if (!IsValidUtf8(found->second)) {
    return std::unexpected(ApiError(400, fmt::format("query parameter '{}' is not valid UTF-8", name)));
  }
  return std::optional<std::string>(found->second);
}

HttpResult<std::string> RequiredQuery(const HttpRequest& request, std::string_view name) {
  auto value = OptionalQuery(request, name);
  if (!value) return std::unexpected(value.error());
  if (!value->has_value()) return std::unexpected(ApiError(400, fmt::format("query parameter '{}' is required", name)));
  return **value;
}

Result<std::string> NormalizedAddressOfRecord(std::string_view uri) {
  if (uri.size() > kMaxAddressOfRecordBytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("an address of record must be at most {} bytes", kMaxAddressOfRecordBytes));
  }
  auto aor = ParseAddressOfRecord(uri);
  if (!aor) return std::unexpected(aor.error());
  return aor->Uri();
}

HttpResult<std::string> AddressOfRecordParameter(std::string_view what, std::string_view uri) {
  auto aor = NormalizedAddressOfRecord(uri);
  if (!aor) return std::unexpected(ApiError(422, fmt::format("{}: {}", what, aor.error().message)));
  return *aor;
}

HttpResult<std::optional<std::string>> OptionalStringField(const json& body, std::string_view field, size_t max_bytes,
                                                           bool multiline) {
  auto found = body.find(field);
  if (found == body.end() || found->is_null()) return std::optional<std::string>();
  if (!found->is_string()) return std::unexpected(ApiError(422, fmt::format("field '{}' must be a string", field)));
  std::string value = found->get<std::string>();
  if (value.size() > max_bytes) {
    return std::unexpected(ApiError(422, fmt::format("field '{}' must be at most {} bytes", field, max_bytes)));
  }
  bool has_control = std::any_of(value.begin(), value.end(), [&](char c) {
    auto u = static_cast<unsigned char>(c);
    if (multiline && (c == '\n' || c == '\t' || c == '\r')) return false;
    return u < 0x20 || u == 0x7f;
  });
  if (has_control) {
    return std::unexpected(ApiError(422, fmt::format("field '{}' must not contain control characters", field)));
  }
  return std::optional<std::string>(std::move(value));
}

HttpResult<std::optional<std::vector<std::string>>> OptionalStringListField(
    const json& body, std::string_view field, size_t max_items,
    const std::function<Result<std::string>(std::string_view)>& check) {
  auto found = body.find(field);
  if (found == body.end() || found->is_null()) return std::optional<std::vector<std::string>>();
  if (!found->is_array()) {
    return std::unexpected(ApiError(422, fmt::format("field '{}' must be an array of strings", field)));
  }
  if (found->size() > max_items) {
    return std::unexpected(ApiError(422, fmt::format("field '{}' may hold at most {} entries", field, max_items)));
  }
  std::vector<std::string> values;
  for (size_t i = 0; i < found->size(); ++i) {
    const json& item = (*found)[i];
    if (!item.is_string()) return std::unexpected(ApiError(422, fmt::format("field '{}'[{}] must be a string", field, i)));
    auto checked = check(item.get<std::string>());
    if (!checked) {
      return std::unexpected(ApiError(422, fmt::format("field '{}'[{}]: {}", field, i, checked.error().message)));
    }
    values.push_back(std::move(*checked));
  }
  return std::optional<std::vector<std::string>>(std::move(values));
}

}  // namespace tandem
