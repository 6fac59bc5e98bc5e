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
    if (document->version >= chosen.version) chosen = std::move(*document);
  } else if (stored.error().code != ErrorCode::kNotFound) {
    return std::unexpected(stored.error());
  }
  auto topology = ParseDocumentTopology(chosen);
  if (!topology) return std::unexpected(topology.error());
  Snapshot snapshot{std::make_shared<const CmsDocument>(std::move(chosen)), std::move(*topology)};
  return std::unique_ptr<CmsReplica>(new CmsReplica(std::move(path), std::move(snapshot)));
}

CmsReplica::Snapshot CmsReplica::Current() const {
  std::lock_guard lock(mu_);
  return snapshot_;
}

Result<bool> CmsReplica::Install(CmsDocument document) {
  {
    std::lock_guard lock(mu_);
    if (document.version <= snapshot_.document->version) return false;
  }
  auto topology = ParseDocumentTopology(document);
  if (!topology) return std::unexpected(topology.error());
  // Persist before exposing: after a crash the server restarts from what it served.
  std::lock_guard lock(mu_);
  if (document.version <= snapshot_.document->version) return false;  // a concurrent install won
  if (auto written = WriteFileAtomically(path_, document.ToJson()); !written) return std::unexpected(written.error());
  snapshot_ = Snapshot{std::make_shared<const CmsDocument>(std::move(document)), std::move(*topology)};
  return true;
}

}  // namespace tandem
