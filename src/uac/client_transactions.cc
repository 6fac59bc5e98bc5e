#include "uac/client_transactions.h"

#include <openssl/rand.h>

#include <fmt/format.h>

namespace tandem::sip {

namespace {

constexpr auto kT1 = std::chrono::milliseconds(500);
constexpr auto kT2 = std::chrono::milliseconds(4000);
constexpr auto kTimerF = 64 * kT1;

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  TANDEM_CHECK(RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) == 1);
  std::string hex;
  for (unsigned char c : raw) hex += fmt::format("{:02x}", c);
  return hex;
}

}  // namespace

struct ClientTransactions::Pending {
  Pending(boost::asio::io_context& io) : retransmit(io), timeout(io) {}
  SipMessage request;
  RequestTarget target;
  FinalResponseCallback on_final;
  boost::asio::steady_timer retransmit;
  boost::asio::steady_timer timeout;
};

Result<RequestTarget> TargetOf(std::string_view uri_text) {
  auto uri = ParseUri(uri_text);
  if (!uri || !uri->is_sip()) {
    return MakeError(ErrorCode::kInvalidArgument, fmt::format("'{}' is not a SIP URI", uri_text));
  }
  if (uri->host_kind != HostKind::kIpv4 && uri->host_kind != HostKind::kIpv6) {
    return MakeError(ErrorCode::kInvalidArgument, fmt::format("'{}' does not name an IP address", uri_text));
  }
  RequestTarget target;
  target.address = std::string(uri->HostAddress());
  target.port = uri->has_port ? uri->port : 5060;
  auto transport = uri->Param("transport");
  if (transport && (*transport == "tcp" || *transport == "TCP")) target.protocol = TransportProtocol::kTcp;
  return target;
}

RequestTarget DeliveryTarget(std::string_view contact_uri, const MessageSource& registered_from) {
  RequestTarget source_target{registered_from.protocol, registered_from.address, registered_from.port};
  if (registered_from.protocol == TransportProtocol::kTcp) return source_target;
  auto contact = TargetOf(contact_uri);
  if (!contact || contact->protocol != TransportProtocol::kUdp) return source_target;
  return *contact;
}

ClientTransactions::ClientTransactions(boost::asio::io_context& io, SipTransport& transport)
    : io_(io), transport_(transport), branch_salt_(RandomHex(6)) {}

ClientTransactions::~ClientTransactions() = default;

void ClientTransactions::Send(SipMessage request, const RequestTarget& target, FinalResponseCallback on_final) {
  std::string branch = fmt::format("z9hG4bK{}{:x}", branch_salt_, next_branch_++);
  request.PrependHeader(HeaderId::kVia, fmt::format("SIP/2.0/{} {};branch={};rport", TransportName(target.protocol),
                                                    transport_.SentBy(), branch));
  if (auto sent = transport_.SendRequest(target.protocol, target.address, target.port, request); !sent) {
    on_final(BuildResponse(request, 503, "Service Unavailable"));
    return;
  }
  auto pending = std::make_unique<Pending>(io_);
  pending->request = std::move(request);
  pending->target = target;
  pending->on_final = std::move(on_final);
  pending->timeout.expires_after(kTimerF);
  pending->timeout.async_wait([this, branch](const boost::system::error_code& ec) {
    if (ec) return;
    auto found = pending_.find(branch);
    if (found == pending_.end()) return;
    Finish(branch, BuildResponse(found->second->request, 408, "Request Timeout"));
  });
  pending_.emplace(branch, std::move(pending));
  if (target.protocol == TransportProtocol::kUdp) ArmRetransmit(branch, kT1);
}

void ClientTransactions::ArmRetransmit(const std::string& branch, std::chrono::milliseconds interval) {
  auto found = pending_.find(branch);
  if (found == pending_.end()) return;
  found->second->retransmit.expires_after(interval);
  found->second->retransmit.async_wait([this, branch, interval](const boost::system::error_code& ec) {
    if (ec) return;
    auto found = pending_.find(branch);
    if (found == pending_.end()) return;
    const Pending& pending = *found->second;
    (void)transport_.SendRequest(pending.target.protocol, pending.target.address, pending.target.port,
                                 pending.request);
    ArmRetransmit(branch, std::min(interval * 2, kT2));
  });
}

bool ClientTransactions::OnResponse(const SipMessage& response) {
  auto via = response.TopVia();
  if (!via) return false;
  auto found = pending_.find(std::string(via->branch));
  if (found == pending_.end()) return false;
  if (response.status_code() < 200) {
    // Provisional: stop retransmitting faster than T2, keep waiting (RFC 3261 §17.1.2.2).
    found->second->retransmit.cancel();
    ArmRetransmit(found->first, kT2);
    return true;
  }
  Finish(found->first, response);
  return true;
}

void ClientTransactions::Finish(const std::string& branch, const SipMessage& response) {
  auto found = pending_.find(branch);
  if (found == pending_.end()) return;
  std::unique_ptr<Pending> pending = std::move(found->second);
  pending_.erase(found);
  pending->retransmit.cancel();
  pending->timeout.cancel();
  pending->on_final(response);
}

}  // namespace tandem::sip
