#include "cms/cms_replica.h"

#include <fmt/format.h>

#include "common/file_util.h"

namespace tandem {

Result<std::shared_ptr<const Topology>> CmsReplica::ParseDocumentTopology(const CmsDocument& document) {
  TopologyParseResult parsed = ParseTopology(document.topology_toml, document.topology_file);
  if (parsed.HasErrors()) {
    std::string first = parsed.diagnostics.empty() ? "" : parsed.diagnostics.front().ToString();
    return MakeError(ErrorCode::kCorruption,
                     fmt::format("CMS version {} holds an invalid topology: {}", document.version, first));
  }
  return std::make_shared<const Topology>(std::move(*parsed.topology));
}

Result<CmsReplica::Snapshot> CmsReplica::MakeSnapshot(CmsDocument document) {
  auto topology = ParseDocumentTopology(document);
  if (!topology) return std::unexpected(topology.error());
  if (document.master_pool.empty()) document.master_pool = (*topology)->cms_master_pool;
  return Snapshot{std::make_shared<const CmsDocument>(std::move(document)), std::move(*topology)};
}

Result<std::unique_ptr<CmsReplica>> CmsReplica::Open(std::string path, CmsDocument bootstrap) {
  CmsDocument chosen = std::move(bootstrap);
  auto stored = ReadFile(path);
  if (stored) {
    auto document = CmsDocument::FromJson(*stored);
    if (!document) {
      return MakeError(ErrorCode::kCorruption,
                       fmt::format("CMS replica {} is corrupt ({}); move it away to start from the topology file",
                                   path, document.error().message));
    }
    if (!chosen.IsNewerThan(*document)) chosen = std::move(*document);
  } else if (stored.error().code != ErrorCode::kNotFound) {
    return std::unexpected(stored.error());
  }
  auto snapshot = MakeSnapshot(std::move(chosen));
  if (!snapshot) return std::unexpected(snapshot.error());
  return std::unique_ptr<CmsReplica>(new CmsReplica(std::move(path), std::move(*snapshot)));
}

CmsReplica::Snapshot CmsReplica::Current() const {
  std::lock_guard lock(mu_);
  return snapshot_;
}

Result<bool> CmsReplica::Install(CmsDocument document) {
  {
    std::lock_guard lock(mu_);
    if (!document.IsNewerThan(*snapshot_.document)) return false;
  }
  auto snapshot = MakeSnapshot(std::move(document));
  if (!snapshot) return std::unexpected(snapshot.error());
  // Persist before exposing: after a crash the server restarts from what it served.
  std::lock_guard lock(mu_);
  if (!snapshot->document->IsNewerThan(*snapshot_.document)) return false;  // a concurrent install won
  if (auto written = WriteFileAtomically(path_, snapshot->document->ToJson()); !written) {
    return std::unexpected(written.error());
  }
  snapshot_ = std::move(*snapshot);
  return true;
}

bool IsCmsMasterPool(const CmsReplica::Snapshot& snapshot, std::string_view pool) {
  return snapshot.master_pool() == pool;
}

}  // namespace tandem
