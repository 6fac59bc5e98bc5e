#include "users/user_service.h"

#include <fmt/format.h>

#include "admin/peer_client.h"
#include "auth/digest.h"
#include "common/clock.h"

namespace tandem {

using nlohmann::json;

namespace {

bool IsUserChar(char c) {
  // RFC 3261 user: unreserved / escaped / user-unreserved; we provision the plain subset.
  return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("-_.!~*'()&=+$,;?/").find(c) != std::string_view::npos;
}

bool IsHex(std::string_view text, size_t length) {
  return text.size() == length &&
         std::all_of(text.begin(), text.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

int StatusFor(const Error& error) {
  switch (error.code) {
    case ErrorCode::kInvalidArgument: return 422;
    case ErrorCode::kAlreadyExists: return 409;
    case ErrorCode::kNotFound: return 404;
    case ErrorCode::kUnavailable: return 503;
    default: return 500;
  }
}

// Relays another server's answer unchanged.
HttpResponse Relay(const Result<HttpResponse>& response) {
  if (!response) return HttpResponse::Error(503, response.error().message);
  return *response;
}

}  // namespace

Result<SipAddressOfRecord> ParseAddressOfRecord(std::string_view uri) {
  auto bad = [&](std::string_view why) {
    return MakeError(ErrorCode::kInvalidArgument, fmt::format("'{}' is not a SIP address of record: {}", uri, why));
  };
  if (!uri.starts_with("sip:")) return bad("it must start with sip:");
  std::string_view rest = uri.substr(4);
  auto at = rest.find('@');
  if (at == std::string_view::npos || at == 0) return bad("it needs user@domain");
  std::string_view user = rest.substr(0, at);
  std::string_view domain = rest.substr(at + 1);
  if (!std::all_of(user.begin(), user.end(), IsUserChar)) return bad("the user part has a character not allowed");
  if (domain.empty() || !std::all_of(domain.begin(), domain.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-';
      })) {
    return bad("the domain must be a host name");
  }
  std::string lower_domain(domain);
  std::transform(lower_domain.begin(), lower_domain.end(), lower_domain.begin(), ::tolower);
  return SipAddressOfRecord{std::string(user), lower_domain};
}

Result<UserRecord> MakeUserRecord(std::string_view uri, std::string_view home_pool, std::string_view password) {
  auto aor = ParseAddressOfRecord(uri);
  if (!aor) return std::unexpected(aor.error());
  if (password.empty()) return MakeError(ErrorCode::kInvalidArgument, "the password is empty");
  UserRecord user{aor->Uri(), aor->user, aor->domain, std::string(home_pool), "", "", "", "", NowUnixMillis()};
  std::string full = aor->user + "@" + aor->domain;
  // The realm is the SIP domain, so the HA1s are fixed at provisioning time.
  struct {
    std::string* out;
    std::string_view username;
    DigestAlgorithm algorithm;
  } digests[] = {{&user.ha1_md5, aor->user, DigestAlgorithm::kMd5},
                 {&user.ha1_sha256, aor->user, DigestAlgorithm::kSha256},
                 {&user.ha1_md5_full, full, DigestAlgorithm::kMd5},
                 {&user.ha1_sha256_full, full, DigestAlgorithm::kSha256}};
  for (auto& digest : digests) {
    auto ha1 = ComputeHa1(digest.username, aor->domain, password, digest.algorithm);
    if (!ha1) return std::unexpected(ha1.error());
    *digest.out = *ha1;
  }
  return user;
}

json UserToJson(const UserRecord& user, bool with_secrets) {
  json out{{"uri", user.uri}, {"pool", user.home_pool}, {"created_at_ms", user.created_at_ms}};
  if (with_secrets) {
    out["ha1_md5"] = user.ha1_md5;
    out["ha1_sha256"] = user.ha1_sha256;
    out["ha1_md5_full"] = user.ha1_md5_full;
    out["ha1_sha256_full"] = user.ha1_sha256_full;
  }
  return out;
}

UserService::UserService(std::string admin_token, CmsReplica& replica, Store& store, std::string local_pool)
    : admin_token_(std::move(admin_token)), replica_(replica), store_(store), local_pool_(std::move(local_pool)) {}

void UserService::RegisterRoutes(HttpServer& http) {
  http.Route("POST", "/users", [this](const HttpRequest& request) { return AddUsers(request); });
  http.Route("GET", "/users", [this](const HttpRequest& request) { return ListUsers(request); });
  http.Route("DELETE", "/users", [this](const HttpRequest& request) { return RemoveUser(request); });
}

HttpResponse UserService::AddUsers(const HttpRequest& request) {
  auto body = json::parse(request.body, nullptr, false);
  if (!body.is_object()) return HttpResponse::Error(400, "the body must be a JSON object");
  for (const auto& [key, value] : body.items()) {
    if (key != "pool" && key != "users") return HttpResponse::Error(400, fmt::format("unknown field '{}'", key));
  }
  if (!body.contains("pool") || !body["pool"].is_string()) return HttpResponse::Error(400, "field 'pool' must be a string");
  if (!body.contains("users") || !body["users"].is_array()) return HttpResponse::Error(400, "field 'users' must be an array");
  std::string pool = body["pool"];
  auto snapshot = replica_.Current();
  if (snapshot.topology->FindPool(pool) == nullptr) {
    return HttpResponse::Error(422, fmt::format("pool '{}' is not in the topology", pool));
  }
  // The pool serving the pool's users provisions them (its backup pool while it is
  // failed over); they stay homed in `pool`.
  const PoolSpec* target = snapshot.topology->FindPool(snapshot.document->ServingPoolOf(pool));
  if (target == nullptr) return HttpResponse::Error(503, fmt::format("the pool serving {} is not in the topology", pool));
  if (target->fqdn != local_pool_) {
    return Relay(CallAnyServerOf(*target, "POST", "/users", request.body, {.token = admin_token_}));
  }
  auto refused = store_.GetSetting(PersistentChangesRefusedKey(pool));
  if (!refused) return HttpResponse::Error(503, refused.error().message);
  if (*refused && !(*refused)->empty()) {
    return HttpResponse::Error(409, fmt::format("users of pool {} cannot be added now: {}; nothing changed", pool,
                                                **refused));
  }

  std::vector<UserRecord> users;
  static const char* kSecretFields[] = {"ha1_md5", "ha1_sha256", "ha1_md5_full", "ha1_sha256_full"};
  for (size_t i = 0; i < body["users"].size(); ++i) {
    const json& entry = body["users"][i];
    auto field_error = [&](std::string_view what) {
      return HttpResponse::Error(422, fmt::format("users[{}]: {}", i, what));
    };
    if (!entry.is_object()) return field_error("must be an object");
    for (const auto& [key, value] : entry.items()) {
      if (key != "uri" && std::find(std::begin(kSecretFields), std::end(kSecretFields), key) == std::end(kSecretFields)) {
        return field_error(fmt::format("unknown field '{}'", key));
      }
    }
    if (!entry.contains("uri") || !entry["uri"].is_string()) return field_error("field 'uri' must be a string");
    auto aor = ParseAddressOfRecord(entry["uri"].get<std::string>());
    if (!aor) return field_error(aor.error().message);
    if (aor->domain != snapshot.topology->sip_domain) {
      return field_error(fmt::format("the domain of {} must be the SIP domain {}", aor->Uri(), snapshot.topology->sip_domain));
    }
    UserRecord user{aor->Uri(), aor->user, aor->domain, pool, "", "", "", "", NowUnixMillis()};
    std::string* secrets[] = {&user.ha1_md5, &user.ha1_sha256, &user.ha1_md5_full, &user.ha1_sha256_full};
    for (int k = 0; k < 4; ++k) {
      const char* name = kSecretFields[k];
      size_t length = k % 2 == 0 ? 32 : 64;
      if (!entry.contains(name) || !entry[name].is_string() || !IsHex(entry[name].get<std::string>(), length)) {
        return field_error(fmt::format("field '{}' must be {} hex digits", name, length));
      }
      *secrets[k] = entry[name].get<std::string>();
    }
    users.push_back(std::move(user));
  }
  if (auto added = store_.AddUsers(users); !added) return HttpResponse::Error(StatusFor(added.error()), added.error().message);
  return HttpResponse::Json(200, json{{"added", users.size()}, {"pool", pool}}.dump());
}

HttpResponse UserService::ListUsers(const HttpRequest& request) {
  auto snapshot = replica_.Current();
  auto pool_param = request.query.find("pool");
  std::vector<const PoolSpec*> pools;
  if (pool_param != request.query.end()) {
    const PoolSpec* pool = snapshot.topology->FindPool(pool_param->second);
    if (pool == nullptr) return HttpResponse::Error(422, fmt::format("pool '{}' is not in the topology", pool_param->second));
    pools.push_back(pool);
  } else {
    for (const PoolSpec& pool : snapshot.topology->pools) pools.push_back(&pool);
  }
  json users = json::array();
  json unreachable = json::array();
  for (const PoolSpec* pool : pools) {
    if (pool->fqdn == local_pool_) {
      auto listed = store_.ListUsers();
      if (!listed) return HttpResponse::Error(500, listed.error().message);
      for (const UserRecord& user : *listed) users.push_back(UserToJson(user, false));
      continue;
    }
    auto response = CallAnyServerOf(*pool, "GET", "/users?pool=" + UrlEncode(pool->fqdn), "", {.token = admin_token_});
    auto answer = response && response->status == 200 ? json::parse(response->body, nullptr, false) : json();
    if (!answer.is_object() || !answer.contains("users")) {
      unreachable.push_back(pool->fqdn);
      continue;
    }
    for (const json& user : answer["users"]) users.push_back(user);
  }
  return HttpResponse::Json(200, json{{"users", users}, {"unreachable_pools", unreachable}}.dump());
}

HttpResponse UserService::RemoveUser(const HttpRequest& request) {
  auto uri_param = request.query.find("uri");
  if (uri_param == request.query.end()) return HttpResponse::Error(400, "query parameter 'uri' is required");
  auto aor = ParseAddressOfRecord(uri_param->second);
  if (!aor) return HttpResponse::Error(422, aor.error().message);
  auto pool_param = request.query.find("pool");
  bool only_local = pool_param != request.query.end();
  if (!only_local || pool_param->second == local_pool_) {
    auto removed = store_.RemoveUser(aor->Uri());
    if (removed) return HttpResponse::Json(200, json{{"removed", aor->Uri()}, {"pool", local_pool_}}.dump());
    if (removed.error().code != ErrorCode::kNotFound || only_local) {
      return HttpResponse::Error(StatusFor(removed.error()), removed.error().message);
    }
  }
  // Not homed here: ask the other pools, each answering for itself only.
  auto snapshot = replica_.Current();
  for (const PoolSpec& pool : snapshot.topology->pools) {
    if (pool.fqdn == local_pool_ || (only_local && pool.fqdn != pool_param->second)) continue;
    auto response = CallAnyServerOf(
        pool, "DELETE", fmt::format("/users?uri={}&pool={}", UrlEncode(aor->Uri()), UrlEncode(pool.fqdn)), "",
        {.token = admin_token_});
    if (!response) return HttpResponse::Error(503, response.error().message + "; nothing was removed there");
    if (response->status != 404) return *response;
  }
  return HttpResponse::Error(404, fmt::format("user {} is not provisioned in any pool", aor->Uri()));
}

}  // namespace tandem
