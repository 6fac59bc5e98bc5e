// The rules of pool failover and failback on the CMS's DR routing state: what is
// allowed (the ordering rule: a pool serving another pool's users cannot itself be
// failed over until that pool is failed back; a disaster failover of the CMS master
// pool needs a CMS failover first) and how the routing state changes. The CMS master
// checks and applies an update in one step, against its newest document, so two
// admins racing cannot both win.
//
// Thread-safety: free functions on values.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "cms/cms_document.h"
#include "common/error.h"
#include "topology/topology.h"

namespace tandem {

struct RoutingUpdate {
  enum class Action { kFailover, kFailback };
  Action action = Action::kFailover;
  std::string pool;  // the pool whose users move (the one that homes them)
  bool disaster = false;
  // Failover: what the backup pool had applied of `pool`'s change log, per module.
  std::map<std::string, int64_t> applied_seq;
  int64_t now_ms = 0;

  std::string ToJson() const;
  static Result<RoutingUpdate> FromJson(std::string_view json);
};

// kNotFound for a pool not in the topology; kFailedPrecondition, with the sentence
// to show the admin (what, why, what to do), for an update the rules refuse.
Status CheckRoutingUpdate(const CmsDocument& document, const Topology& topology, const RoutingUpdate& update);

// Applies an update that passed CheckRoutingUpdate and raises the routing epoch.
void ApplyRoutingUpdate(CmsDocument& document, const Topology& topology, const RoutingUpdate& update);

}  // namespace tandem
