// What one pool needs to know about its pairing: the paired pool, the per-pairing
// secret that authenticates the Backup Service link, and which modules flow in
// which direction (user and conference data both ways; the CMS only from the
// active master pool to its standby).
//
// Thread-safety: free functions; Pairing is a plain value.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cms/cms_document.h"
#include "common/error.h"
#include "topology/topology.h"

namespace tandem {

inline constexpr std::string_view kUserModule = "user";
inline constexpr std::string_view kConferenceModule = "conference";
inline constexpr std::string_view kCmsModule = "cms";

struct Pairing {
  std::shared_ptr<const Topology> topology;  // keeps `local` and `partner` valid
  const PoolSpec* local = nullptr;
  const PoolSpec* partner = nullptr;
  std::vector<std::string> export_modules;  // what the local pool ships to the partner
  std::vector<std::string> import_modules;  // what it accepts from the partner
  // Set while the local pool's users are served by another pool (pool failover):
  // what that pool had applied when it took over. The local pool ships nothing
  // beyond it: later records are divergent, kept apart, never merged.
  std::optional<PoolRouting> served_elsewhere;
};

// The pairing of `pool` in `topology`, with the CMS flowing from `cms_master_pool`,
// the effective master (the CMS document's, CmsReplica::Snapshot::master_pool(): it
// moves with a CMS failover); kFailedPrecondition when the pool has no backup pool,
// kNotFound when the topology has no such pool.
Result<Pairing> PairingOf(std::shared_ptr<const Topology> topology, std::string_view pool,
                          const CmsDocument& document);

// Where the secret of the pairing of `pool_a` and `pool_b` lives under a data
// directory (the same file whichever pool asks).
std::string PairingSecretPath(const std::string& data_dir, std::string_view pool_a, std::string_view pool_b);

// Reads the pairing's secret, creating it (random, mode 0600) when missing. `tandem
// up` creates every pairing's secret before starting servers, so servers sharing a
// data directory agree; servers of different hosts need the same file copied.
Result<std::string> LoadOrCreatePairingSecret(const std::string& data_dir, std::string_view pool_a,
                                              std::string_view pool_b);

// The last sequence of `module` a pool whose users are served elsewhere may still
// ship: what the serving pool had applied when it took over (no limit for the CMS).
int64_t DivergenceCutoff(const PoolRouting& routing, std::string_view module);

// Whether `module` is one the Backup Service knows.
bool IsBackupModule(std::string_view module);

}  // namespace tandem
