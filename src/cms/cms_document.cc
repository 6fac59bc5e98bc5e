#include "cms/cms_document.h"

#include <tuple>

#include <nlohmann/json.hpp>

namespace tandem {

const std::string& CmsDocument::ServingPoolOf(const std::string& home_pool) const {
  auto routed = routing.find(home_pool);
  return routed == routing.end() ? home_pool : routed->second.served_by;
}

bool CmsDocument::IsNewerThan(int64_t epoch, int64_t other_version) const {
  return std::tie(master_epoch, version) > std::tie(epoch, other_version);
}

std::string CmsDocument::ToJson() const {
  nlohmann::json pools = nlohmann::json::object();
  for (const auto& [pool, routed] : routing) {
    pools[pool] = {{"served_by", routed.served_by},
                   {"disaster", routed.disaster},
                   {"since_ms", routed.since_ms},
                   {"applied_seq", routed.applied_seq}};
  }
  return nlohmann::json{{"version", version},
                        {"routing", pools},
                        {"routing_epoch", routing_epoch},
                        {"published_at_ms", published_at_ms},
                        {"topology_file", topology_file},
                        {"topology_toml", topology_toml},
                        {"master_pool", master_pool},
                        {"master_epoch", master_epoch},
                        {"epoch_start_version", epoch_start_version}}
      .dump();
}

Result<CmsDocument> CmsDocument::FromJson(std::string_view json) {
  auto parsed = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return MakeError(ErrorCode::kCorruption, "CMS document is not a JSON object");
  }
  // 1: read, 0: absent, -1: present with the wrong type.
  auto field = [&](const char* key, auto& out, bool (nlohmann::json::*check)() const noexcept) -> int {
    auto it = parsed.find(key);
    if (it == parsed.end()) return 0;
    if (!((*it).*check)()) return -1;
    it->get_to(out);
    return 1;
  };
  CmsDocument document;
  if (field("version", document.version, &nlohmann::json::is_number_integer) != 1 ||
      field("published_at_ms", document.published_at_ms, &nlohmann::json::is_number_integer) != 1 ||
      field("topology_file", document.topology_file, &nlohmann::json::is_string) != 1 ||
      field("topology_toml", document.topology_toml, &nlohmann::json::is_string) != 1) {
    return MakeError(ErrorCode::kCorruption, "CMS document lacks version, published_at_ms, topology_file or topology_toml");
  }
  if (field("master_pool", document.master_pool, &nlohmann::json::is_string) < 0 ||
      field("master_epoch", document.master_epoch, &nlohmann::json::is_number_integer) < 0 ||
      field("epoch_start_version", document.epoch_start_version, &nlohmann::json::is_number_integer) < 0 ||
      document.master_epoch < 1) {
    return MakeError(ErrorCode::kCorruption, "CMS document has a malformed master_pool, master_epoch or "
                                             "epoch_start_version");
  }
  if (field("routing_epoch", document.routing_epoch, &nlohmann::json::is_number_integer) < 0) {
    return MakeError(ErrorCode::kCorruption, "CMS document has a malformed routing_epoch");
  }
  if (auto routing = parsed.find("routing"); routing != parsed.end()) {
    if (!routing->is_object()) return MakeError(ErrorCode::kCorruption, "CMS document has a malformed routing");
    for (const auto& [pool, routed] : routing->items()) {
      if (!routed.is_object() || !routed.contains("served_by") || !routed["served_by"].is_string()) {
        return MakeError(ErrorCode::kCorruption, "CMS document has a malformed routing entry for " + pool);
      }
      PoolRouting entry;
      entry.served_by = routed["served_by"].get<std::string>();
      if (auto flag = routed.find("disaster"); flag != routed.end() && flag->is_boolean()) entry.disaster = *flag;
      if (auto since = routed.find("since_ms"); since != routed.end() && since->is_number_integer()) {
        entry.since_ms = *since;
      }
      if (routed.contains("applied_seq") && routed["applied_seq"].is_object()) {
        for (const auto& [module, seq] : routed["applied_seq"].items()) {
          if (seq.is_number_integer()) entry.applied_seq[module] = seq.get<int64_t>();
        }
      }
      document.routing[pool] = std::move(entry);
    }
  }
  return document;
}

}  // namespace tandem
