// The Central Management Store document: one immutable, versioned snapshot of what
// the deployment is (today the topology and the CMS master; later also the user
// directory and the DR routing state). The master pool's store keeps every version;
// every server keeps the newest one it has seen as a local replica file.
//
// Documents are ordered by (master_epoch, version): a CMS failover raises the epoch,
// so the new master's versions win over anything a stale master published, even
// when a forced failover reuses a version number the stale master already used.
//
// Thread-safety: a plain value type.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "common/clock.h"
#include "common/error.h"

namespace tandem {

// The DR routing state of one pool's users, while another pool serves them (pool
// failover). Pools absent from the routing state serve their own users.
struct PoolRouting {
  std::string served_by;        // the FQDN of the pool serving this pool's users
  bool disaster = false;        // failed over without the home pool (what it had not shipped is lost)
  int64_t since_ms = 0;
  // What the serving pool had applied of the home pool's change log when it took
  // over, per module: records after these are divergent if the home pool returns.
  std::map<std::string, int64_t> applied_seq;
};

struct CmsDocument {
  int64_t version = 0;  // 0: not published yet (bootstrapped from a topology file)
  int64_t published_at_ms = 0;
  std::string topology_file;  // name of the file it was published from, for messages
  std::string topology_toml;  // the topology text, byte for byte as published
  // The effective CMS master pool. Empty only in documents written before CMS
  // failover existed: the replica fills in the topology's [cms] master_pool.
  std::string master_pool;
  int64_t master_epoch = 1;  // raised by every CMS failover
  // The first version of this epoch (the promoted one); versions below it are the
  // history the new master inherited. 1 for epoch 1.
  int64_t epoch_start_version = 1;
  // DR routing: home pool -> who serves its users, raised epoch at every failover and
  // failback. A server acts only on the newest routing epoch it has seen (fencing).
  std::map<std::string, PoolRouting> routing;
  int64_t routing_epoch = 1;

  // The pool that serves the users homed in `home_pool`.
  const std::string& ServingPoolOf(const std::string& home_pool) const;

  // Whether this document comes after `other` in (master_epoch, version) order.
  bool IsNewerThan(const CmsDocument& other) const { return IsNewerThan(other.master_epoch, other.version); }
  bool IsNewerThan(int64_t epoch, int64_t other_version) const;

  std::string ToJson() const;
  // Missing master fields (older documents) take their defaults; present ones of
  // the wrong type make the document corrupt.
  static Result<CmsDocument> FromJson(std::string_view json);
};

}  // namespace tandem
