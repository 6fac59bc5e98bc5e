// SIP transports (RFC 3261 §18) and the server transaction layer (§17.2) of one
// tandemd: UDP and TCP listeners on the topology's address and port (IPv4 or IPv6),
// TCP stream framing, limits (message size, header count, idle and slow
// connections, connections per source), and server transactions that absorb
// retransmissions by replaying the last response.
//
// Malformed input never reaches the handler: a malformed request is answered with
// the parser's 4xx/5xx (or dropped when it is garbage or a response), and counted in
// the metrics (tandem_sip_malformed_total{transport,reason}); other clients are
// unaffected. A request whose Request-URI scheme is not served gets 416 without a
// transaction. Before the handler sees a request, the transport adds received= and
// rport= to its top Via (RFC 3261 §18.2.1, RFC 3581), so BuildResponse(request())
// produces a response that routes back correctly.
//
// Metrics (counters): tandem_sip_messages_total{transport,direction},
// tandem_sip_malformed_total{transport,reason},
// tandem_sip_retransmissions_absorbed_total, tandem_sip_tcp_connections_refused_total,
// tandem_sip_tcp_connections_closed_total{reason}, tandem_sip_overload_rejected_total.
//
// Thread-safety: everything runs on the io_context passed in, which must be run by
// exactly one thread (the SIP thread). Handlers are called on that thread.
// ServerTransaction::Respond, Send, SendRequest, Stop, SentBy and
// open_tcp_connections may be called from any thread (work is posted to the SIP
// thread). Listen must be called before the io_context runs or on the SIP thread.
// The transport must be destroyed on the SIP thread or once the io_context no
// longer runs. The io_context and the metrics registry must outlive the transport.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>

#include "common/error.h"
#include "common/metrics.h"
#include "sip/message.h"
#include "sip/parser.h"

namespace tandem::sip {

enum class TransportProtocol : uint8_t { kUdp, kTcp };
std::string_view TransportName(TransportProtocol protocol);  // "UDP", "TCP"

// Where a message came from, enough to send responses back (RFC 3261 §18.2.2:
// over the same TCP connection; for UDP to the source address and port, which is
// what rport asks for and what Via's sent-by is on loopback).
struct MessageSource {
  TransportProtocol protocol = TransportProtocol::kUdp;
  std::string address;         // remote IP, without brackets
  uint16_t port = 0;           // remote port
  uint64_t connection_id = 0;  // TCP: which connection; 0 for UDP
};

struct TransportLimits {
  ParseOptions parse;                                   // max message size, header count
  std::chrono::milliseconds tcp_idle_timeout{std::chrono::seconds(120)};  // no bytes either way: close
  std::chrono::milliseconds tcp_message_timeout{std::chrono::seconds(10)};  // a started message must complete
  size_t max_connections_per_source = 64;               // inbound, per remote IP
  size_t max_connections = 10000;                       // inbound and outbound
  size_t max_transactions = 100000;                     // beyond: new requests get 503
  // RFC 3261 §17 timer base values (shorter in tests).
  std::chrono::milliseconds t1{500};
  std::chrono::milliseconds t2{4000};
  std::chrono::milliseconds t4{5000};
};

class ServerTransaction;
using RequestHandler = std::function<void(const std::shared_ptr<ServerTransaction>& transaction)>;
using ResponseHandler = std::function<void(SipMessage response, const MessageSource& source)>;

class SipTransport {
 public:
  SipTransport(boost::asio::io_context& io, MetricsRegistry& metrics, TransportLimits limits = {});
  ~SipTransport();
  SipTransport(const SipTransport&) = delete;
  SipTransport& operator=(const SipTransport&) = delete;

  // Called once per new server transaction (not for retransmissions, not for ACK,
  // not for CANCEL — the transport answers CANCEL itself, see
  // ServerTransaction::cancelled() — and not for responses). Set before Listen().
  void SetRequestHandler(RequestHandler handler);
  // Called for every response received (for client transactions of later modules:
  // NOTIFY, proxied requests). Optional; set before Listen().
  void SetResponseHandler(ResponseHandler handler);

  // Binds UDP and TCP on address:port (an IPv4 or IPv6 literal, IPv6 with or
  // without brackets; port 0: the kernel picks one port, the same for both).
  // Returns the bound port. Once only.
  Result<uint16_t> Listen(const std::string& address, uint16_t port);
  // Closes the listeners and every connection and drops all transactions; later
  // Respond/Send calls are ignored. Final. Runs at once on the SIP thread (or when
  // the io_context is stopped), else is posted to it.
  void Stop();

  // Sends a message. For TCP over `connection_id` if still open, else fails; for
  // UDP a datagram to address:port. On the SIP thread the status reports whether
  // the message was handed to the socket; from other threads the send is posted
  // and only argument errors are reported.
  Status Send(const MessageSource& to, const SipMessage& message);
  // Sends a new request to an IP address and port over UDP or TCP (TCP reuses an
  // open connection with that remote address and port, accepted or initiated, or
  // connects and sends once connected). Completion is not reported.
  Status SendRequest(TransportProtocol protocol, const std::string& address, uint16_t port, const SipMessage& request);

  // The sent-by this server puts in its own Via headers ("127.0.0.1:5060",
  // "[::1]:5060"); empty before Listen().
  std::string SentBy() const;

  size_t open_tcp_connections() const;
  size_t active_transactions() const;

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

// One server transaction. Retransmissions of the request are absorbed (a provisional
// response already sent is replayed; an INVITE not answered within 200 ms gets 100
// Trying); once a final response is sent, a retransmitted request gets it again
// until the transaction ends (Timer J = 64*T1 for UDP non-INVITE, at once for TCP;
// INVITE: a non-2xx final is retransmitted on UDP with Timer G until the ACK or
// Timer H = 64*T1, the ACK is absorbed for Timer I = T4; a 2xx is sent once and
// replayed to retransmitted INVITEs for 64*T1, RFC 6026).
// Handlers keep the shared_ptr as long as they need it (e.g. across an async store
// call). A transaction the handler never answers leaves the table after 64*T1
// (non-INVITE) or 5 minutes (INVITE); a late response is still sent, but
// retransmissions are no longer absorbed.
class ServerTransaction : public std::enable_shared_from_this<ServerTransaction> {
 public:
  virtual ~ServerTransaction() = default;

  // The request as received, with received=/rport= added to the top Via.
  virtual const SipMessage& request() const = 0;
  virtual const MessageSource& source() const = 0;
  // Sends a response (provisional or final). A second final response is ignored.
  // A response above 100 whose To has no tag gets to_tag(). Safe from any thread;
  // responses of one thread go out in the order given.
  virtual void Respond(SipMessage response) = 0;
  // Shorthand: Respond(BuildResponse(request(), code, reason, to_tag())).
  virtual void Respond(int status_code, std::string_view reason = {}) = 0;
  // True once the client sent CANCEL for this (INVITE) transaction.
  virtual bool cancelled() const = 0;
  // The To tag this transaction gives its responses (RFC 3261 §8.2.6.2) when the
  // request's To had none.
  virtual std::string_view to_tag() const { return {}; }
};

}  // namespace tandem::sip
