// Routing SIP requests between pools (DR): which pool serves a user, as the CMS
// routing state says, and the pieces of SIP that follow from it — the Contacts of a
// 301 that sends a REGISTER to the serving pool, and whether a request has already
// crossed from another pool (so it is never sent back: no bouncing between pools).
//
// A server serves user U only if ServingPoolOf(home pool of U) is its own pool. A
// pool's store also holds its partner's users (the Backup Service copies them): being
// in the store does not make a user served here.
//
// Resiliency mode (dr/resiliency_monitor.h): while this pool's monitor says so, it
// also serves its unreachable partner's users, although the routing state still
// names the partner.
//
// Fencing: PoolRoutingView adopts the routing of a CMS document only if its routing
// epoch is at least the newest one it has acted on, so a stale document (an older
// master's) can never route users back to a pool that no longer serves them.
//
// Thread-safety: PoolRoutingView is not thread-safe (SipService uses it on the SIP
// thread only); the free functions are pure.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cms/cms_document.h"
#include "cms/cms_replica.h"
#include "dr/resiliency_monitor.h"
#include "sip/message.h"
#include "topology/topology.h"
#include "transport/sip_transport.h"

namespace tandem {

class PoolRoutingView {
 public:
  explicit PoolRoutingView(std::string own_pool) : own_pool_(std::move(own_pool)) {}
  // Adds this pool's resiliency mode to the routing state (borrowed; may be null).
  void SetResiliency(const ResiliencyMonitor* resiliency) { resiliency_ = resiliency; }

  // Takes the routing of `snapshot` unless its routing epoch is older than the one
  // acted on (fencing). Returns true when the routing changed (a new routing epoch or
  // other routes, or resiliency mode started or ended), i.e. when users served here
  // may now be served elsewhere.
  bool Update(const CmsReplica::Snapshot& snapshot);

  // The pool serving the users homed in `home_pool`, or nullptr when it is this one
  // (also before the first Update: a server without routing state serves its users).
  // A serving pool missing from the topology is reported as `kMissingPool`.
  const PoolSpec* ServingPoolOf(const std::string& home_pool) const;
  static const PoolSpec kMissingPool;

  bool ServesHomePool(const std::string& home_pool) const { return ServingPoolOf(home_pool) == nullptr; }
  // Whether another pool may serve anyone at all (several pools in the topology).
  bool HasOtherPools() const { return topology_ && topology_->pools.size() > 1; }
  int64_t routing_epoch() const { return document_ ? document_->routing_epoch : 0; }
  const std::string& own_pool() const { return own_pool_; }
  const Topology* topology() const { return topology_.get(); }

 private:
  const std::string own_pool_;
  const ResiliencyMonitor* resiliency_ = nullptr;
  uint64_t resiliency_generation_ = 0;  // the monitor's, when last acted on
  std::shared_ptr<const CmsDocument> document_;  // the one whose routing we act on
  std::shared_ptr<const Topology> topology_;
};

// The Contacts of a 301 sending `user`'s REGISTER to `pool`: one per server,
// "<sip:user@address:sip_port;transport=udp|tcp>" with the request's transport.
std::vector<std::string> RedirectContactsOf(const PoolSpec& pool, std::string_view user,
                                            sip::TransportProtocol transport);

// Whether a server of a pool other than `own_pool` put one of the request's Vias
// there: the request already crossed between pools and must not cross again.
bool CrossedFromAnotherPool(const sip::SipMessage& request, const Topology& topology, std::string_view own_pool);

// "address:port" as a server's Via carries it (IPv6 in brackets).
std::string SentByOf(const std::string& address, uint16_t port);

}  // namespace tandem
