// A server's local read-only replica of the CMS: the newest document it has seen,
// with its topology already parsed, persisted to a file so the server starts and
// keeps serving while the CMS master is unreachable.
//
// Thread-safety: thread-safe. Current() hands out immutable snapshots, so readers
// never block the installer and never see half an update.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "cms/cms_document.h"
#include "common/error.h"
#include "topology/topology.h"

namespace tandem {

class CmsReplica {
 public:
  struct Snapshot {
    std::shared_ptr<const CmsDocument> document;  // master_pool always filled in
    std::shared_ptr<const Topology> topology;

    // The effective CMS master pool: the document's, not the topology's [cms]
    // master_pool, which only names the first master.
    const std::string& master_pool() const { return document->master_pool; }
  };

  // Loads the replica file at `path` when it exists and is newer than `bootstrap`;
  // otherwise starts from `bootstrap` (normally version 0, from the topology file).
  // A replica file that is unreadable or corrupt is an error, not silently ignored.
  static Result<std::unique_ptr<CmsReplica>> Open(std::string path, CmsDocument bootstrap);

  Snapshot Current() const;

  // Installs `document` if it is newer in (master_epoch, version) order than the
  // current one and its topology is valid; persists it first. Returns true if
  // installed, false if not newer.
  Result<bool> Install(CmsDocument document);

  // Parses a document's topology; an invalid one is kCorruption with the diagnostics.
  static Result<std::shared_ptr<const Topology>> ParseDocumentTopology(const CmsDocument& document);
  // The snapshot of `document`: its topology parsed, and a missing master_pool (a
  // document older than CMS failover) filled in from the topology.
  static Result<Snapshot> MakeSnapshot(CmsDocument document);

 private:
  CmsReplica(std::string path, Snapshot snapshot) : path_(std::move(path)), snapshot_(std::move(snapshot)) {}

  const std::string path_;
  mutable std::mutex mu_;
  Snapshot snapshot_;  // guarded by mu_
};

// Whether `pool` is the effective CMS master in `snapshot` (what `pool failover
// --disaster` must refuse for: fail the CMS over first).
bool IsCmsMasterPool(const CmsReplica::Snapshot& snapshot, std::string_view pool);

}  // namespace tandem
