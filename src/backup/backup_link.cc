#include "backup/backup_link.h"

#include <fmt/format.h>

#include "admin/http_client.h"
#include "admin/peer_client.h"
#include "backup/batch_codec.h"
#include "common/hash.h"

namespace tandem {

Result<nlohmann::json> CallPartner(const Pairing& pairing, const std::string& secret, std::string_view method,
                                   std::string_view path, std::map<std::string, std::string> params,
                                   std::string_view body, std::chrono::milliseconds timeout) {
  params["source"] = pairing.local->fqdn;
  SignParams(secret, path, params);
  auto response =
      CallAnyServerOf(*pairing.partner, method, PathWithQuery(path, params), body, HttpCallOptions{.timeout = timeout});
  if (!response) return std::unexpected(response.error());
  auto json = nlohmann::json::parse(response->body, nullptr, /*allow_exceptions=*/false);
  if (response->status != 200) {
    std::string reason = json.is_object() && json.contains("error") && json["error"].is_string()
                             ? json["error"].get<std::string>()
                             : fmt::format("HTTP {}", response->status);
    return MakeError(ErrorCode::kUnavailable,
                     fmt::format("pool {} refused {}: {}", pairing.partner->fqdn, path, reason));
  }
  if (!json.is_object()) {
    return MakeError(ErrorCode::kUnavailable,
                     fmt::format("pool {} answered {} without a JSON object", pairing.partner->fqdn, path));
  }
  return json;
}

Result<std::string> LocalChangeLogId(Store& store) {
  auto id = store.GetSetting(kChangeLogIdSetting);
  if (!id) return std::unexpected(id.error());
  if (*id && !(*id)->empty()) return **id;
  // Only the backup lease holder asks, so two servers rarely make one at once; if
  // they do, the partner sees another log once and takes one snapshot too many.
  std::string made = RandomHex(16);
  if (auto set = store.SetSetting(kChangeLogIdSetting, made); !set) return std::unexpected(set.error());
  return made;
}

bool FollowsAnotherLog(int64_t position, std::string_view followed_log, std::string_view this_log, int64_t head_seq) {
  if (position <= 0) return false;
  if (!followed_log.empty() && !this_log.empty()) return followed_log != this_log;
  return position > head_seq;
}

std::string SourceLogSettingKey(std::string_view source_pool, std::string_view module) {
  return fmt::format("backup.source_log.{}.{}", source_pool, module);
}

}  // namespace tandem
