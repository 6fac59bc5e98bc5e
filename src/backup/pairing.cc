#include "backup/pairing.h"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

#include "common/file_util.h"
#include "common/hash.h"

namespace tandem {

Result<Pairing> PairingOf(std::shared_ptr<const Topology> topology, std::string_view pool,
                          const CmsDocument& document) {
  const std::string& cms_master_pool = document.master_pool;
  Pairing pairing;
  pairing.topology = std::move(topology);
  pairing.local = pairing.topology->FindPool(pool);
  if (pairing.local == nullptr) {
    return MakeError(ErrorCode::kNotFound, fmt::format("pool {} is not in the published topology", pool));
  }
  pairing.partner = pairing.topology->BackupPoolOf(pool);
  if (pairing.partner == nullptr) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("pool {} has no backup pool; set backup_pool in the topology and publish it", pool));
  }
  for (auto* modules : {&pairing.export_modules, &pairing.import_modules}) {
    modules->emplace_back(kUserModule);
    modules->emplace_back(kConferenceModule);
  }
  // The CMS flows from its master pool to the standby (the master's backup pool).
  if (cms_master_pool == pairing.local->fqdn) pairing.export_modules.emplace_back(kCmsModule);
  if (cms_master_pool == pairing.partner->fqdn) pairing.import_modules.emplace_back(kCmsModule);
  if (auto routed = document.routing.find(pairing.local->fqdn);
      routed != document.routing.end() && routed->second.served_by != pairing.local->fqdn) {
    pairing.served_elsewhere = routed->second;
  }
  return pairing;
}

std::string PairingSecretPath(const std::string& data_dir, std::string_view pool_a, std::string_view pool_b) {
  auto [first, second] = std::minmax(pool_a, pool_b);
  return fmt::format("{}/pairing-{}+{}.secret", data_dir, first, second);
}

Result<std::string> LoadOrCreatePairingSecret(const std::string& data_dir, std::string_view pool_a,
                                              std::string_view pool_b) {
  return LoadOrCreateSecretFile(PairingSecretPath(data_dir, pool_a, pool_b));
}

int64_t DivergenceCutoff(const PoolRouting& routing, std::string_view module) {
  // The CMS follows its master, not the users: it is never cut off.
  if (module == kCmsModule) return std::numeric_limits<int64_t>::max();
  auto applied = routing.applied_seq.find(std::string(module));
  return applied == routing.applied_seq.end() ? 0 : applied->second;
}

bool IsBackupModule(std::string_view module) {
  return module == kUserModule || module == kConferenceModule || module == kCmsModule;
}

}  // namespace tandem
