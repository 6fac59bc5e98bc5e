#include "server/sip_service.h"

#include <malloc.h>

#include <algorithm>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace tandem {

namespace {

constexpr char kAllow[] = "REGISTER, OPTIONS, ACK, CANCEL, PUBLISH, SUBSCRIBE, NOTIFY, MESSAGE";
constexpr auto kSweepInterval = std::chrono::seconds(1);
constexpr size_t kTrimAfterTransactions = 1000;

PresenceNoteLookup NotesOf(Store& store) {
  return [&store](const std::string& presentity) {
    auto note = store.GetPresenceNote(presentity);
    return note ? note->note : std::string();
  };
}

MeetingMembersLookup MeetingsOf(Store& store) {
  return [&store](const std::string& id) -> std::optional<std::vector<std::string>> {
    auto meeting = store.GetMeeting(id);
    if (!meeting || !meeting->has_value() || (*meeting)->state != MeetingState::kScheduled) return std::nullopt;
    std::vector<std::string> members = (*meeting)->attendees;
    if (std::find(members.begin(), members.end(), (*meeting)->organizer) == members.end()) {
      members.push_back((*meeting)->organizer);
    }
    return members;
  };
}

DigestAuthenticatorOptions AuthenticatorOptions(const Topology& topology, const std::string& shared_secret) {
  DigestAuthenticatorOptions options;
  options.nonce.secret = shared_secret;
  options.algorithms.clear();
  for (const std::string& name : topology.sip_digest_algorithms) {
    options.algorithms.push_back(name == "MD5" ? DigestAlgorithm::kMd5 : DigestAlgorithm::kSha256);
  }
  return options;
}

// The user a request is for.
struct RoutedUser {
  std::string user;  // "alice"
  std::string host;  // "example.com"
  std::string aor;   // "sip:alice@example.com", as the registrar and presence key it
};

// The user a request is for: MESSAGE by its Request-URI (falling back to To),
// REGISTER, PUBLISH and SUBSCRIBE by To. nullopt for requests served wherever they
// arrive (OPTIONS, meeting chat, foreign domains).
std::optional<RoutedUser> RoutingAorOf(const sip::SipMessage& request, std::string_view domain) {
  auto aor_of = [&](const sip::Uri& uri) -> std::optional<RoutedUser> {
    std::string host(uri.host);
    std::transform(host.begin(), host.end(), host.begin(), ::tolower);
    std::string user = uri.UnescapedUser();
    if (!uri.is_sip() || host != domain || user.empty() || user.starts_with(kMeetingUserPrefix)) return std::nullopt;
    std::string aor = fmt::format("sip:{}@{}", user, host);
    return RoutedUser{std::move(user), std::move(host), std::move(aor)};
  };
  sip::Method method = request.method_id();
  if (method == sip::Method::kMessage) {
    auto uri = request.RequestUri();
    if (uri && uri->has_user) return aor_of(*uri);
  } else if (method != sip::Method::kRegister && method != sip::Method::kPublish &&
             method != sip::Method::kSubscribe) {
    return std::nullopt;
  }
  auto to = request.To();
  if (!to) return std::nullopt;
  return aor_of(to->uri);
}

std::string OwnPoolOf(const Topology& topology, const ServerSpec& self) {
  const PoolSpec* pool = nullptr;
  return topology.FindServer(self.id, &pool) != nullptr ? pool->fqdn : std::string();
}

// How long a server of another pool that a proxied request could not reach is
// skipped (the next request tries the others of its pool first).
constexpr auto kUnreachableFor = std::chrono::seconds(30);

}  // namespace

std::vector<PoolPeer> PoolPeersOf(const Topology& topology, const ServerSpec& self) {
  const PoolSpec* pool = nullptr;
  std::vector<PoolPeer> peers;
  if (topology.FindServer(self.id, &pool) == nullptr) return peers;
  for (const ServerSpec& server : pool->servers) {
    if (server.id == self.id) continue;
    std::string address = server.address;
    if (address.size() > 2 && address.front() == '[') address = address.substr(1, address.size() - 2);
    peers.push_back(PoolPeer{server.id, sip::RequestTarget{sip::TransportProtocol::kUdp, address, server.sip_port},
                             SentByOf(address, server.sip_port)});
  }
  return peers;
}

SipService::SipService(const Topology& topology, const ServerSpec& self, Store& store, MetricsRegistry& metrics,
                       const std::string& shared_secret, WatcherAuthorizer authorize_watcher)
    : address_(self.address),
      port_(self.sip_port),
      metrics_(metrics),
      users_(store),
      transport_(io_, metrics),
      uac_(io_, transport_),
      authenticator_(AuthenticatorOptions(topology, shared_secret)),
      registrar_(RegistrarOptions{.domain = topology.sip_domain, .authenticate = topology.sip_authenticate},
                 bindings_, authenticator_, users_.Lookup(), metrics),
      presence_(PresenceOptions{.domain = topology.sip_domain}, io_, transport_, uac_, users_.Lookup(),
                std::move(authorize_watcher), NotesOf(store), metrics),
      messages_(MessageOptions{.domain = topology.sip_domain}, uac_, bindings_, users_.Lookup(), MeetingsOf(store),
                metrics),
      sweep_timer_(io_),
      registered_users_(metrics.GetGauge("tandem_registrar_users", "users with at least one registered contact")),
      registered_contacts_(metrics.GetGauge("tandem_registrar_contacts", "registered contacts")),
      self_id_(self.id),
      domain_(topology.sip_domain),
      forwarded_(metrics.GetCounter("tandem_sip_pool_forwarded_total",
                                    "requests proxied to the pool server owning their user")),
      too_many_hops_(metrics.GetCounter("tandem_sip_too_many_hops_total", "requests refused with 483")),
      pool_routing_(OwnPoolOf(topology, self)),
      redirected_(metrics.GetCounter("tandem_sip_pool_redirected_total",
                                     "REGISTERs redirected (301) to the pool serving their user")),
      pool_proxied_(metrics.GetCounter("tandem_sip_pool_routed_total",
                                       "requests proxied to the pool serving their user")),
      routing_conflicts_(metrics.GetCounter(
          "tandem_sip_pool_routing_conflicts_total",
          "requests from another pool for a user this pool does not serve either (503, never sent back)")) {
  transport_.SetRequestHandler([this](const std::shared_ptr<sip::ServerTransaction>& transaction) {
    OnRequest(transaction);
  });
  transport_.SetResponseHandler([this](sip::SipMessage response, const sip::MessageSource&) {
    uac_.OnResponse(response);
  });
}

SipService::~SipService() { Stop(); }

Status SipService::Start() {
  auto port = transport_.Listen(address_, port_);
  if (!port) {
    return MakeError(port.error().code, fmt::format("cannot listen for SIP on {}:{}: {}", address_, port_,
                                                    port.error().message));
  }
  users_.Start();
  ScheduleSweep();
  thread_ = std::thread([this] {
    auto work = boost::asio::make_work_guard(io_);
    io_.run();
  });
  spdlog::info("SIP: listening on UDP and TCP {}", transport_.SentBy());
  return OkStatus();
}

void SipService::Stop() {
  if (!thread_.joinable()) return;
  boost::asio::post(io_, [this] {
    transport_.Stop();
    sweep_timer_.cancel();
    io_.stop();
  });
  thread_.join();
  users_.Stop();
}

void SipService::SetPoolPeers(std::vector<PoolPeer> peers) { peers_ = std::move(peers); }

void SipService::SetRoutingGroups(RoutingGroupMap map) {
  boost::asio::post(io_, [this, map = std::move(map)]() mutable { routing_ = std::move(map); });
}

bool SipService::ForwardToOwner(const std::shared_ptr<sip::ServerTransaction>& transaction) {
  if (routing_.live_servers().size() < 2) return false;  // alone (or not yet routing): serve everything
  const sip::SipMessage& request = transaction->request();
  auto routed = RoutingAorOf(request, domain_);
  if (!routed) return false;
  const std::string& owner = routing_.OwnerOfUser(routed->aor);
  if (owner.empty() || owner == self_id_) return false;
  auto peer = std::find_if(peers_.begin(), peers_.end(), [&](const PoolPeer& p) { return p.id == owner; });
  if (peer == peers_.end()) return false;
  // Forwarded by a peer whose view of the pool differs from ours for a moment: we
  // serve it rather than bounce it back (never two hops inside the pool).
  if (auto via = request.TopVia(); via && std::any_of(peers_.begin(), peers_.end(), [&](const PoolPeer& p) {
        return p.sent_by == fmt::format("{}:{}", via->host, via->has_port ? via->port : 5060);
      })) {
    return false;
  }
  forwarded_->Increment();
  Proxy(transaction, peer->target);
  return true;
}

void SipService::Proxy(const std::shared_ptr<sip::ServerTransaction>& transaction, const sip::RequestTarget& target,
                       std::function<bool(const sip::SipMessage& response)> retry) {
  const sip::SipMessage& request = transaction->request();
  int hops = request.MaxForwards().value_or(70);
  if (hops <= 0) {
    too_many_hops_->Increment();
    transaction->Respond(483, "Too Many Hops");
    return;
  }
  sip::SipMessage forwarded = request;
  forwarded.SetHeader(sip::HeaderId::kMaxForwards, std::to_string(hops - 1));
  // A Route naming us (we record-routed this dialog) has done its job (RFC 3261 §16.4).
  if (auto route = forwarded.FindHeader(sip::HeaderId::kRoute);
      route && route->find(transport_.SentBy()) != std::string_view::npos) {
    forwarded.RemoveTopValue(sip::HeaderId::kRoute);
  }
  if (request.method_id() == sip::Method::kSubscribe && request.ToTag().empty()) {
    forwarded.PrependHeader(sip::HeaderId::kRecordRoute, fmt::format("<sip:{};lr>", transport_.SentBy()));
  }
  uac_.Send(std::move(forwarded), target, [transaction, retry = std::move(retry)](const sip::SipMessage& response) {
    if (retry && retry(response)) return;
    sip::SipMessage relayed = response;
    relayed.RemoveTopValue(sip::HeaderId::kVia);  // ours; the client's is next
    transaction->Respond(std::move(relayed));
  });
}

bool SipService::RouteToServingPool(const std::shared_ptr<sip::ServerTransaction>& transaction) {
  if (replica_ == nullptr) return false;
  // Every request sees the newest routing this server has (a pointer check when it
  // did not change): a user failed over elsewhere is never served here in between.
  if (pool_routing_.Update(replica_->Current())) DropUsersServedElsewhere();
  if (!pool_routing_.HasOtherPools()) return false;
  const sip::SipMessage& request = transaction->request();
  auto routed = RoutingAorOf(request, domain_);
  if (!routed) return false;
  auto user = users_.Find(routed->user, routed->host);
  // Unknown here (404 as usual) or a store error (the handler reports it).
  if (!user || !user->has_value()) return false;
  const PoolSpec* serving = pool_routing_.ServingPoolOf((*user)->home_pool);
  if (serving == nullptr) return false;
  if (serving == &PoolRoutingView::kMissingPool || serving->servers.empty() ||
      CrossedFromAnotherPool(request, *pool_routing_.topology(), pool_routing_.own_pool())) {
    // Routing views differ for a moment (a document not yet everywhere), or the
    // state names a pool we do not know: refuse rather than serve a user we are
    // fenced from, or send the request back where it came from.
    routing_conflicts_->Increment();
    sip::SipMessage response = sip::BuildResponse(request, 503, "Service Unavailable");
    response.AddHeader(sip::HeaderId::kRetryAfter, "5");
    transaction->Respond(std::move(response));
    return true;
  }
  if (request.method_id() == sip::Method::kRegister) {
    // No binding here: the client registers with the serving pool (RFC 3261 §21.3.2).
    redirected_->Increment();
    sip::SipMessage response = sip::BuildResponse(request, 301, "Moved Permanently");
    for (const std::string& contact : RedirectContactsOf(*serving, routed->user, transaction->source().protocol)) {
      response.AddHeader(sip::HeaderId::kContact, contact);
    }
    transaction->Respond(std::move(response));
    return true;
  }
  pool_proxied_->Increment();
  // The same user goes to the same server of that pool first (fewer hops inside it
  // when its owner is stable); the others are the fallbacks.
  ProxyToPool(transaction, *serving, std::hash<std::string>{}(routed->aor) % serving->servers.size(), 0);
  return true;
}

void SipService::ProxyToPool(const std::shared_ptr<sip::ServerTransaction>& transaction, const PoolSpec& pool,
                             size_t first_server, size_t attempt) {
  const size_t count = pool.servers.size();
  auto now = std::chrono::steady_clock::now();
  // The first server from `first_server + attempt` on that is not known unreachable;
  // when all are, the one in turn (something must be tried).
  size_t chosen = (first_server + attempt) % count;
  for (size_t i = attempt; i < count; ++i) {
    const ServerSpec& candidate = pool.servers[(first_server + i) % count];
    auto down = unreachable_until_.find(candidate.id);
    if (down == unreachable_until_.end() || down->second <= now) {
      chosen = (first_server + i) % count;
      attempt = i;
      break;
    }
  }
  const ServerSpec& server = pool.servers[chosen];
  std::string address = server.address;
  if (address.size() > 2 && address.front() == '[') address = address.substr(1, address.size() - 2);
  // Between servers UDP, as inside the pool: the response comes back to our port.
  sip::RequestTarget target{sip::TransportProtocol::kUdp, address, server.sip_port};
  Proxy(transaction, target, [this, transaction, pool_fqdn = pool.fqdn, server_id = server.id, first_server,
                              attempt](const sip::SipMessage& response) {
    int status = response.status_code();
    // No answer at all (Timer F): skip that server for a while. The client has given
    // up on this request already, so it is relayed, not retried.
    if (status == 408) unreachable_until_[server_id] = std::chrono::steady_clock::now() + kUnreachableFor;
    // A 503 (the send failed, or that server is busy) may be tried on the next
    // server of the pool (RFC 3261 §16.7), each at most once.
    const PoolSpec* pool = pool_routing_.topology() ? pool_routing_.topology()->FindPool(pool_fqdn) : nullptr;
    if (status != 503 || pool == nullptr || attempt + 1 >= pool->servers.size()) return false;
    ProxyToPool(transaction, *pool, first_server, attempt + 1);
    return true;
  });
}

void SipService::DropUsersServedElsewhere() {
  size_t dropped = bindings_.RemoveUsersIf([this](std::string_view aor) {
    // "sip:user@host", as the registrar keys bindings.
    size_t at = aor.rfind('@');
    if (!aor.starts_with("sip:") || at == std::string_view::npos) return false;
    auto user = users_.Find(std::string(aor.substr(4, at - 4)), std::string(aor.substr(at + 1)));
    return user && user->has_value() && !pool_routing_.ServesHomePool((*user)->home_pool);
  });
  if (dropped > 0) {
    spdlog::info("SIP: routing epoch {}: dropped the registrations of {} users another pool now serves",
                 pool_routing_.routing_epoch(), dropped);
  }
}

void SipService::ScheduleSweep() {
  sweep_timer_.expires_after(kSweepInterval);
  sweep_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    bindings_.SweepExpired(NowUnixMillis());
    // Users another pool now serves leave even when no request of theirs arrives
    // (a failover, or the end of resiliency mode, while everyone is quiet).
    if (replica_ != nullptr && pool_routing_.Update(replica_->Current())) DropUsersServedElsewhere();
    presence_.Sweep();
    ReleaseMemoryAfterBursts();
    registered_users_->Set(static_cast<double>(bindings_.user_count()));
    registered_contacts_->Set(static_cast<double>(bindings_.binding_count()));
    ScheduleSweep();
  });
}

void SipService::ReleaseMemoryAfterBursts() {
  // A registration storm leaves tens of thousands of finished transactions that
  // linger for Timer J; once they are gone, hand the freed pages back to the OS so
  // the resident size reflects what is live (glibc keeps freed heap otherwise).
  size_t active = transport_.active_transactions();
  transactions_since_trim_ = std::max(transactions_since_trim_, active);
  if (active == 0 && transactions_since_trim_ >= kTrimAfterTransactions) {
    ::malloc_trim(0);
    transactions_since_trim_ = 0;
  }
}

void SipService::OnRequest(const std::shared_ptr<sip::ServerTransaction>& transaction) {
  const sip::SipMessage& request = transaction->request();
  const auto method_index = static_cast<size_t>(request.method_id());
  Counter* counter = method_index < requests_by_method_.size() ? requests_by_method_[method_index] : nullptr;
  if (counter == nullptr) {
    counter = metrics_.GetCounter("tandem_sip_requests_total", "SIP requests by method (new transactions)",
                                  fmt::format("method=\"{}\"", request.method_id() == sip::Method::kUnknown
                                                                     ? std::string_view("other")
                                                                     : sip::MethodName(request.method_id())));
    if (method_index < requests_by_method_.size()) requests_by_method_[method_index] = counter;
  }
  counter->Increment();
  if (RouteToServingPool(transaction)) return;
  if (ForwardToOwner(transaction)) return;
  switch (request.method_id()) {
    case sip::Method::kRegister:
      registrar_.HandleRegister(transaction);
      return;
    case sip::Method::kPublish:
      presence_.HandlePublish(transaction);
      return;
    case sip::Method::kSubscribe:
      presence_.HandleSubscribe(transaction);
      return;
    case sip::Method::kMessage:
      messages_.HandleMessage(transaction);
      return;
    case sip::Method::kOptions: {
      // Keep-alive probes and capability queries (RFC 3261 §11).
      sip::SipMessage response = sip::BuildResponse(request, 200, "OK");
      response.AddHeader("Allow", kAllow);
      response.AddHeader("Accept", "application/sdp");
      transaction->Respond(std::move(response));
      return;
    }
    default: {
      sip::SipMessage response = sip::BuildResponse(request, 405, "Method Not Allowed");
      response.AddHeader("Allow", kAllow);
      transaction->Respond(std::move(response));
      return;
    }
  }
}

nlohmann::json SipService::StatusJson() const {
  return {{"sip", transport_.SentBy()},
          {"registered_users", bindings_.user_count()},
          {"registered_contacts", bindings_.binding_count()},
          {"presence", presence_.StatusJson()}};
}

}  // namespace tandem
