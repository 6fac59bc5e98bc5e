// The SIP side of one tandemd: the transports on the server's SIP port, and the
// dispatch of each new server transaction by method (OPTIONS answered here,
// REGISTER to the registrar,
// PUBLISH/SUBSCRIBE to presence, MESSAGE to instant messaging). Runs its own io_context on one SIP thread, so SIP
// traffic never waits behind admin calls.
//
// Any server answers for its pool: a request for a user whose routing group another
// live server of the pool owns is proxied to that server (statefully: our Via on
// top, Max-Forwards decremented, Record-Route on a dialog-creating SUBSCRIBE so the
// dialog's later requests come back through us and follow the group if its owner
// changes), and the owner's response is relayed with our Via removed. The owner
// authenticates (digest nonces are valid pool-wide), so the proxy never challenges.
// A request that a pool peer forwarded is always served here: never a second hop.
//
// Between pools (DR routing, server/pool_routing.h): before that, a request for a
// user whose home pool is served by another pool (the CMS routing state, newest
// routing epoch only) is not served here even if the user is in our store (the
// partner's users are): a REGISTER gets 301 with the serving pool's servers as
// Contacts, anything else is proxied to a server of the serving pool the same way,
// which proxies on to the owner there. A request that already crossed from another
// pool never crosses again (503 while the two pools' routing views differ).
//
// Thread-safety: Start/Stop from the owning thread; the rest runs on the SIP thread.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "auth/authenticator.h"
#include "cms/cms_replica.h"
#include "im/message_service.h"
#include "presence/presence_service.h"
#include "common/metrics.h"
#include "registrar/binding_table.h"
#include "registrar/registrar.h"
#include "pool/routing_group_map.h"
#include "server/pool_routing.h"
#include "store/store.h"
#include "topology/topology.h"
#include "transport/sip_transport.h"
#include "uac/client_transactions.h"
#include "users/user_cache.h"

namespace tandem {

// The other servers of this server's pool, as SIP next hops.
struct PoolPeer {
  std::string id;
  sip::RequestTarget target;
  std::string sent_by;  // "address:port" as their Via headers carry it
};
// The pool peers of `self` in `topology` (every server of its pool but itself).
std::vector<PoolPeer> PoolPeersOf(const Topology& topology, const ServerSpec& self);

class SipService {
 public:
  // `shared_secret` keys the digest nonces, so every server of a pool accepts the
  // nonces of the others. Borrows the store and the metrics registry.
  SipService(const Topology& topology, const ServerSpec& self, Store& store, MetricsRegistry& metrics,
             const std::string& shared_secret, WatcherAuthorizer authorize_watcher);
  ~SipService();

  // Binds UDP and TCP on the server's SIP address and port; fails naming them.
  Status Start();
  void Stop();

  nlohmann::json StatusJson() const;
  // User data that decides who sees `presentity` changed (any thread).
  void PresentityChanged(const std::string& presentity) { presence_.PresentityChanged(presentity); }

  // Pool routing: who owns which routing group now (any thread; takes effect on the
  // SIP thread, in order). Until the first call every request is served here.
  void SetRoutingGroups(RoutingGroupMap map);
  void SetPoolPeers(std::vector<PoolPeer> peers);  // before Start
  // Routing between pools follows the CMS routing state in `replica` and this pool's
  // resiliency mode in `resiliency` (both borrowed, set before Start; `resiliency`
  // may be null). Without a replica every user in the store is served here.
  void SetCmsReplica(const CmsReplica& replica, const ResiliencyMonitor* resiliency) {
    replica_ = &replica;
    pool_routing_.SetResiliency(resiliency);
  }

  // The soft state, for write-back and takeover (thread-safe tables).
  BindingTable& bindings() { return bindings_; }
  PresenceService& presence() { return presence_; }

 private:
  void OnRequest(const std::shared_ptr<sip::ServerTransaction>& transaction);
  // Proxies the request to the pool peer owning its user; false to serve it here.
  bool ForwardToOwner(const std::shared_ptr<sip::ServerTransaction>& transaction);
  // Redirects or proxies a request whose user another pool serves; false to serve
  // it in this pool.
  bool RouteToServingPool(const std::shared_ptr<sip::ServerTransaction>& transaction);
  // Proxies to a server of `pool`: `first_server` (chosen by user) unless it timed
  // out lately, the next one after a 503.
  void ProxyToPool(const std::shared_ptr<sip::ServerTransaction>& transaction, const PoolSpec& pool,
                   size_t first_server, size_t attempt);
  // The stateful proxy step both of the above share: Max-Forwards (483 at 0), a
  // Route naming us removed, Record-Route on a dialog-creating SUBSCRIBE, and the
  // final response relayed with our Via removed — unless `retry` takes it over.
  void Proxy(const std::shared_ptr<sip::ServerTransaction>& transaction, const sip::RequestTarget& target,
             std::function<bool(const sip::SipMessage& response)> retry = {});
  // Forgets the bindings of users this pool no longer serves (routing changed).
  void DropUsersServedElsewhere();
  void ScheduleSweep();
  void ReleaseMemoryAfterBursts();

  const std::string address_;
  const uint16_t port_;
  boost::asio::io_context io_;
  MetricsRegistry& metrics_;
  UserCache users_;  // every user lookup of the SIP side goes through it
  sip::SipTransport transport_;
  sip::ClientTransactions uac_;
  BindingTable bindings_;
  DigestAuthenticator authenticator_;
  Registrar registrar_;
  PresenceService presence_;
  MessageService messages_;
  boost::asio::steady_timer sweep_timer_;
  std::thread thread_;
  Gauge* registered_users_;
  Gauge* registered_contacts_;
  size_t transactions_since_trim_ = 0;  // the most transactions seen since the last trim
  // tandem_sip_requests_total by method, indexed by sip::Method (looked up once: the
  // registry lookup formats labels and takes a lock). SIP thread only.
  std::array<Counter*, 32> requests_by_method_{};
  const std::string self_id_;
  const std::string domain_;
  std::vector<PoolPeer> peers_;  // set before Start
  RoutingGroupMap routing_;      // SIP thread only
  Counter* forwarded_;
  Counter* too_many_hops_;
  const CmsReplica* replica_ = nullptr;  // set before Start
  PoolRoutingView pool_routing_;         // SIP thread only
  // Servers of other pools a proxied request could not reach: skipped until then.
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> unreachable_until_;
  Counter* redirected_;
  Counter* pool_proxied_;
  Counter* routing_conflicts_;
};

}  // namespace tandem
