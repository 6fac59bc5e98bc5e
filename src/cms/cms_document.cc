#include "cms/cms_document.h"

#include <chrono>

#include <nlohmann/json.hpp>

namespace tandem {

std::string CmsDocument::ToJson() const {
  return nlohmann::json{{"version", version},
                        {"published_at_ms", published_at_ms},
                        {"topology_file", topology_file},
                        {"topology_toml", topology_toml}}
      .dump();
}

Result<CmsDocument> CmsDocument::FromJson(std::string_view json) {
  auto parsed = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return MakeError(ErrorCode::kCorruption, "CMS document is not a JSON object");
  }
  auto field = [&](const char* key, auto& out, bool (nlohmann::json::*check)() const noexcept) -> bool {
    auto it = parsed.find(key);
    if (it == parsed.end() || !((*it).*check)()) return false;
    it->get_to(out);
    return true;
  };
  CmsDocument document;
  if (!field("version", document.version, &nlohmann::json::is_number_integer) ||
      !field("published_at_ms", document.published_at_ms, &nlohmann::json::is_number_integer) ||
      !field("topology_file", document.topology_file, &nlohmann::json::is_string) ||
      !field("topology_toml", document.topology_toml, &nlohmann::json::is_string)) {
    return MakeError(ErrorCode::kCorruption, "CMS document lacks version, published_at_ms, topology_file or topology_toml");
  }
  return document;
}

}  // namespace tandem
