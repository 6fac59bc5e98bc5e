// Client transactions (RFC 3261 §17.1.2, non-INVITE): the requests tandemd itself
// sends — NOTIFYs to watchers, MESSAGEs forked to a user's devices. Adds this
// server's Via with a fresh branch, retransmits over UDP (Timer E: T1 doubling to
// T2), matches responses by branch, and reports exactly one final outcome: the
// final response, or a synthesized 408 when Timer F (64*T1) fires, or 503 when
// the request cannot be sent at all.
//
// Thread-safety: not thread-safe; everything runs on the SIP thread (the thread
// running the io_context the transport uses). Borrows the transport.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/error.h"
#include "sip/message.h"
#include "sip/uri.h"
#include "transport/sip_transport.h"

namespace tandem::sip {

struct RequestTarget {
  TransportProtocol protocol = TransportProtocol::kUdp;
  std::string address;  // IP literal, without brackets
  uint16_t port = 5060;
};

// Where to send a request for `uri` (a Contact): its host must be an IP literal (no
// DNS here); ;transport=tcp selects TCP; the port defaults to 5060.
Result<RequestTarget> TargetOf(std::string_view uri);

// Where to reach a device that registered `contact_uri` from `registered_from`
// (or subscribed from there): over TCP, back through the connection it opened (a
// device behind TCP usually cannot accept new connections); over UDP, to the
// Contact when it names an IP address, else to the address the request came from.
RequestTarget DeliveryTarget(std::string_view contact_uri, const MessageSource& registered_from);

using FinalResponseCallback = std::function<void(const SipMessage& response)>;

class ClientTransactions {
 public:
  ClientTransactions(boost::asio::io_context& io, SipTransport& transport);
  ~ClientTransactions();

  // Sends `request` (without our Via: added here) and calls `on_final` once.
  void Send(SipMessage request, const RequestTarget& target, FinalResponseCallback on_final);

  // Feed every response the transport receives; true if it belonged to us.
  bool OnResponse(const SipMessage& response);

  size_t pending() const { return pending_.size(); }

 private:
  struct Pending;
  void Finish(const std::string& branch, const SipMessage& response);
  void ArmRetransmit(const std::string& branch, std::chrono::milliseconds interval);

  boost::asio::io_context& io_;
  SipTransport& transport_;
  std::unordered_map<std::string, std::unique_ptr<Pending>> pending_;  // by branch
  uint64_t next_branch_ = 1;
  const std::string branch_salt_;
};

}  // namespace tandem::sip
