#include "server/pool_routing.h"

#include <algorithm>

#include <fmt/format.h>

#include "sip/syntax.h"

namespace tandem {

const PoolSpec PoolRoutingView::kMissingPool{};

bool PoolRoutingView::Update(const CmsReplica::Snapshot& snapshot) {
  bool resiliency_changed = false;
  if (resiliency_ != nullptr && resiliency_->generation() != resiliency_generation_) {
    resiliency_generation_ = resiliency_->generation();
    resiliency_changed = true;
  }
  if (!snapshot.document || !snapshot.topology) return resiliency_changed;
  if (snapshot.document == document_) return resiliency_changed;
  // stale: fenced
  if (document_ && snapshot.document->routing_epoch < document_->routing_epoch) return resiliency_changed;
  bool changed = resiliency_changed || !document_ || snapshot.document->routing_epoch != document_->routing_epoch ||
                 snapshot.document->routing.size() != document_->routing.size();
  if (!changed) {
    for (const auto& [home, routed] : snapshot.document->routing) {
      auto before = document_->routing.find(home);
      if (before == document_->routing.end() || before->second.served_by != routed.served_by) changed = true;
    }
  }
  document_ = snapshot.document;
  topology_ = snapshot.topology;
  return changed;
}

const PoolSpec* PoolRoutingView::ServingPoolOf(const std::string& home_pool) const {
  if (!document_) return nullptr;
  const std::string& serving = document_->ServingPoolOf(home_pool);
  if (serving == own_pool_) return nullptr;
  // Only a pool that still serves its own users (not failed over) can be stood in for.
  if (serving == home_pool && resiliency_ != nullptr && resiliency_->ServesInResiliency(home_pool)) return nullptr;
  const PoolSpec* pool = topology_->FindPool(serving);
  return pool != nullptr ? pool : &kMissingPool;
}

std::string SentByOf(const std::string& address, uint16_t port) {
  bool ipv6 = address.find(':') != std::string::npos && address.front() != '[';
  return ipv6 ? fmt::format("[{}]:{}", address, port) : fmt::format("{}:{}", address, port);
}

std::vector<std::string> RedirectContactsOf(const PoolSpec& pool, std::string_view user,
                                            sip::TransportProtocol transport) {
  std::vector<std::string> contacts;
  std::string_view param = transport == sip::TransportProtocol::kTcp ? "tcp" : "udp";
  for (const ServerSpec& server : pool.servers) {
    contacts.push_back(fmt::format("<sip:{}@{};transport={}>", user, SentByOf(server.address, server.sip_port), param));
  }
  return contacts;
}

namespace {

std::string_view WithoutBrackets(std::string_view host) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') return host.substr(1, host.size() - 2);
  return host;
}

}  // namespace

bool CrossedFromAnotherPool(const sip::SipMessage& request, const Topology& topology, std::string_view own_pool) {
  for (size_t i = request.FindHeaderIndex(sip::HeaderId::kVia); i != sip::SipMessage::npos;
       i = request.FindHeaderIndex(sip::HeaderId::kVia, i + 1)) {
    sip::CommaListIterator elements(request.header(i).value);
    std::string_view element;
    while (elements.Next(&element)) {
      auto via = sip::ParseVia(element);
      if (!via) continue;
      uint16_t port = via->has_port ? via->port : 5060;
      for (const PoolSpec& pool : topology.pools) {
        if (pool.fqdn == own_pool) continue;
        bool ours = std::any_of(pool.servers.begin(), pool.servers.end(), [&](const ServerSpec& server) {
          return server.sip_port == port && WithoutBrackets(server.address) == WithoutBrackets(via->host);
        });
        if (ours) return true;
      }
    }
  }
  return false;
}

}  // namespace tandem
