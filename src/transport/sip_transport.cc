#include "transport/sip_transport.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <deque>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "transport/transport_util.h"

namespace tandem::sip {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using ErrorCodeAsio = boost::system::error_code;
using Wire = std::shared_ptr<const std::string>;

constexpr size_t kUdpBufferSize = 65535;
constexpr size_t kTcpReadChunk = 16 * 1024;
constexpr int kListenAttempts = 10;
// RFC 3261 §17.2.1: send 100 Trying when the TU has not answered an INVITE in 200 ms.
constexpr milliseconds kTryingDelay{200};
// After a fatal framing error: how long the answer may take to leave and the peer to close.
constexpr milliseconds kDrainTimeout{2000};
constexpr milliseconds kSocketRetryDelay{100};
// A peer that sends requests but does not read its responses is cut off here.
constexpr size_t kMaxWriteBacklog = 1024 * 1024;
constexpr milliseconds kMaxSweepInterval{1000};
constexpr milliseconds kMinSweepInterval{10};
// An INVITE never answered by the handler leaves the table after this long.
constexpr std::chrono::minutes kAbandonedInviteAge{5};

constexpr size_t kParseErrorKinds = static_cast<size_t>(ParseErrorKind::kTooManyHeaders) + 1;

size_t TransportIndex(TransportProtocol protocol) { return protocol == TransportProtocol::kUdp ? 0 : 1; }

std::string_view MetricTransportName(size_t index) { return index == 0 ? "udp" : "tcp"; }

// CR, LF and spaces only: UDP keep-alives (RFC 5626 §3.5.1 uses STUN; many clients send CRLF).
bool IsBlank(std::string_view bytes) {
  for (char c : bytes) {
    if (c != '\r' && c != '\n' && c != ' ' && c != '\t') return false;
  }
  return true;
}

// A request line starting with ACK: never answered, even when malformed (§17.1.1.3).
bool StartsWithAck(std::string_view bytes) {
  size_t i = 0;
  while (i < bytes.size() && (bytes[i] == '\r' || bytes[i] == '\n')) ++i;
  return bytes.substr(i).starts_with("ACK ");
}

Wire MakeWire(std::string bytes) { return std::make_shared<const std::string>(std::move(bytes)); }

const Wire& KeepAlivePong() {
  static const Wire pong = MakeWire("\r\n");
  return pong;
}

// Adds `tag` to the To of a response that has none (RFC 3261 §8.2.6.2).
void EnsureToTag(SipMessage* response, std::string_view tag) {
  if (tag.empty() || response->status_code() <= 100) return;
  std::optional<std::string_view> to = response->FindHeader(HeaderId::kTo);
  if (!to || !response->ToTag().empty()) return;
  std::string value = fmt::format("{};tag={}", *to, tag);
  response->SetHeader(HeaderId::kTo, value);
}

}  // namespace

std::string_view TransportName(TransportProtocol protocol) {
  return protocol == TransportProtocol::kUdp ? "UDP" : "TCP";
}

constexpr int kUdpReceiveBufferBytes = 4 << 20;

// The shared state of one transport. Owned by SipTransport through a shared_ptr;
// asynchronous operations hold weak (or, for sockets' own callbacks, strong)
// references so a callback that runs after the transport is gone does nothing.
// Everything but the atomics and sent_by_ is touched on the SIP thread only.
class SipTransport::Impl : public std::enable_shared_from_this<SipTransport::Impl> {
 public:
  class Transaction;
  class Connection;
  using TransactionPtr = std::shared_ptr<Transaction>;
  using ConnectionPtr = std::shared_ptr<Connection>;

  Impl(asio::io_context& io, MetricsRegistry& metrics, TransportLimits limits);

  void SetRequestHandler(RequestHandler handler) { request_handler_ = std::move(handler); }
  void SetResponseHandler(ResponseHandler handler) { response_handler_ = std::move(handler); }
  Result<uint16_t> Listen(const std::string& address, uint16_t port);
  void RequestStop();
  void Shutdown();
  Status Send(const MessageSource& to, const SipMessage& message);
  Status SendRequest(TransportProtocol protocol, const std::string& address, uint16_t port,
                     const SipMessage& request);
  std::string SentBy() const {
    std::lock_guard lock(sent_by_mu_);
    return sent_by_;
  }
  size_t open_tcp_connections() const { return open_connections_.load(std::memory_order_relaxed); }
  size_t active_transactions() const { return active_transactions_.load(std::memory_order_relaxed); }

  // Called by Transaction::Respond (posted to the SIP thread).
  void SendTransactionResponse(const TransactionPtr& tx, SipMessage response);
  asio::io_context& io() { return io_; }

 private:
  struct Deadline {
    SteadyClock::time_point when;
    std::weak_ptr<Transaction> tx;
    bool operator>(const Deadline& other) const { return when > other.when; }
  };

  bool OnSipThread() const { return io_.get_executor().running_in_this_thread(); }
  std::string NewTag();

  // ---- receiving ----
  void StartUdpReceive();
  void OnUdpDatagram(const ErrorCodeAsio& ec, size_t size);
  void OnMessage(std::string_view bytes, const MessageSource& source, Framing framing);
  void OnMalformed(std::string_view bytes, const MessageSource& source, const ParseError& error);
  void OnRequest(SipMessage request, const MessageSource& source);
  void OnAck(const SipMessage& ack);
  void OnCancel(SipMessage cancel, const MessageSource& source);
  void OnRetransmission(const TransactionPtr& tx, const MessageSource& source);
  void RespondStateless(const SipMessage& request, const MessageSource& source, int status_code,
                        std::string_view extra_name = {}, std::string_view extra_value = {});

  // ---- transactions ----
  TransactionPtr CreateTransaction(SipMessage request, const MessageSource& source, std::string key,
                                   std::string to_tag);
  TransactionPtr FindTransaction(const std::string& key) const;
  // A retransmission of a completed non-INVITE UDP transaction: replays its final
  // response and returns true; false when `key` names none.
  bool ReplayCompleted(const std::string& key, const MessageSource& source);
  // Ends `tx` (a non-INVITE UDP transaction whose final response was just sent) and
  // keeps only its key and response, to replay until Timer J fires.
  void KeepCompleted(const TransactionPtr& tx, SteadyClock::time_point timer_j);
  size_t TransactionCount() const { return transactions_.size() + completed_.size(); }
  void SetDeadline(const TransactionPtr& tx, SteadyClock::time_point when);
  void EndTransaction(const TransactionPtr& tx);
  void ArmTryingTimer(const TransactionPtr& tx);
  void ArmTimerG(const TransactionPtr& tx);

  // ---- sending ----
  // Hands wire bytes to the socket for `to`; false when the TCP connection is gone
  // or the address cannot be used.
  bool SendWire(const MessageSource& to, const Wire& wire);
  Status SendRequestOnSipThread(TransportProtocol protocol, const asio::ip::address& address, uint16_t port,
                                const Wire& wire);

  // ---- TCP ----
  void StartAccept();
  void OnAccept(const ErrorCodeAsio& ec, tcp::socket socket);
  ConnectionPtr AddConnection(tcp::socket socket, bool inbound, const tcp::endpoint& remote);
  void StartRead(const ConnectionPtr& c);
  void OnRead(const ConnectionPtr& c, const ErrorCodeAsio& ec, size_t size);
  void ProcessStream(const ConnectionPtr& c);
  void OnFramingError(const ConnectionPtr& c, const ParseError& error);
  bool QueueWrite(const ConnectionPtr& c, const Wire& wire);
  void StartWrite(const ConnectionPtr& c);
  void OnWrite(const ConnectionPtr& c, const ErrorCodeAsio& ec);
  void BeginDrain(const ConnectionPtr& c, std::string_view reason);
  void CloseConnection(const ConnectionPtr& c, std::string_view reason);
  void CountClosed(std::string_view reason);

  // ---- housekeeping ----
  void ScheduleSweep();
  void Sweep();
  void UpdateGauges();

  asio::io_context& io_;
  MetricsRegistry& metrics_;
  const TransportLimits limits_;
  const milliseconds sweep_interval_;
  RequestHandler request_handler_;
  ResponseHandler response_handler_;

  udp::socket udp_;
  tcp::acceptor acceptor_;
  asio::steady_timer sweep_timer_;
  asio::steady_timer udp_retry_timer_;
  asio::steady_timer accept_retry_timer_;
  std::array<char, kUdpBufferSize> udp_buffer_{};
  udp::endpoint udp_sender_;
  bool listening_ = false;
  std::atomic<bool> stopped_{false};
  mutable std::mutex sent_by_mu_;
  std::string sent_by_;

  std::unordered_map<uint64_t, ConnectionPtr> connections_;
  std::unordered_map<std::string, size_t> inbound_per_source_;       // remote IP -> open inbound connections
  std::unordered_map<std::string, uint64_t> connection_by_remote_;   // "ip|port" -> connection id
  uint64_t next_connection_id_ = 1;
  std::atomic<size_t> open_connections_{0};

  // Keyed by a view of the transaction's own key_ (the entry never outlives it).
  std::unordered_map<std::string_view, TransactionPtr> transactions_;
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> deadlines_;
  // Completed non-INVITE UDP transactions, waiting out Timer J (64*T1: most of the
  // table under load). The Transaction and its request are gone; what is left is the
  // key and the response bytes, keyed by a view of the key in completed_order_
  // (deque elements never move). Timer J is the same for all, so the deque is in
  // expiry order.
  struct CompletedKey {
    SteadyClock::time_point timer_j;
    std::string key;
  };
  std::deque<CompletedKey> completed_order_;
  std::unordered_map<std::string_view, Wire> completed_;
  std::atomic<size_t> active_transactions_{0};

  std::mt19937_64 random_;

  std::array<std::array<Counter*, 2>, 2> messages_{};  // [transport][in=0/out=1]
  std::array<std::array<Counter*, kParseErrorKinds>, 2> malformed_{};
  Counter* retransmissions_absorbed_;
  Counter* connections_refused_;
  Counter* overload_rejected_;
  Gauge* open_connections_gauge_;
  Gauge* transactions_gauge_;
};

// ---- server transactions ----

class SipTransport::Impl::Transaction final : public ServerTransaction {
 public:
  enum class State : uint8_t {
    kTrying,      // non-INVITE, nothing sent yet
    kProceeding,  // provisional sent (INVITE starts here)
    kCompleted,   // final sent (INVITE: non-2xx, waiting for ACK)
    kConfirmed,   // INVITE: ACK received
    kAccepted,    // INVITE: 2xx sent (RFC 6026)
  };

  Transaction(std::weak_ptr<Impl> impl, SipMessage request, MessageSource source, std::string key,
              std::string to_tag)
      : impl_(std::move(impl)),
        request_(std::move(request)),
        source_(std::move(source)),
        key_(std::move(key)),
        to_tag_(std::move(to_tag)),
        is_invite_(request_.method_id() == Method::kInvite),
        reliable_(source_.protocol == TransportProtocol::kTcp),
        state_(is_invite_ ? State::kProceeding : State::kTrying) {}

  const SipMessage& request() const override { return request_; }
  const MessageSource& source() const override { return source_; }
  bool cancelled() const override { return cancelled_.load(std::memory_order_acquire); }
  std::string_view to_tag() const override { return to_tag_; }

  void Respond(SipMessage response) override {
    std::shared_ptr<Impl> impl = impl_.lock();
    if (!impl) return;
    auto self = std::static_pointer_cast<Transaction>(shared_from_this());
    asio::post(impl->io(), [weak = impl_, self = std::move(self), response = std::move(response)]() mutable {
      if (std::shared_ptr<Impl> impl = weak.lock()) impl->SendTransactionResponse(self, std::move(response));
    });
  }

  void Respond(int status_code, std::string_view reason) override {
    Respond(BuildResponse(request_, status_code, reason, to_tag_));
  }

  bool final_sent() const { return state_ != State::kTrying && state_ != State::kProceeding; }
  void CancelTimer() {
    if (timer_) timer_->cancel();
  }

 private:
  friend class SipTransport::Impl;

  const std::weak_ptr<Impl> impl_;
  const SipMessage request_;
  const MessageSource source_;
  const std::string key_;
  const std::string to_tag_;
  const bool is_invite_;
  const bool reliable_;
  std::atomic<bool> cancelled_{false};

  // SIP thread only.
  State state_;
  bool in_table_ = false;
  Wire last_response_;
  std::string response_to_tag_;  // To tag of the final response (RFC 2543 ACK matching)
  SteadyClock::time_point deadline_{};
  milliseconds timer_g_interval_{0};
  // 100 Trying delay, then Timer G: INVITE only, created on first use (a timer costs
  // a service lookup under the io_context's lock and ~100 bytes per transaction).
  std::optional<asio::steady_timer> timer_;
};

// ---- TCP connections ----

class SipTransport::Impl::Connection {
 public:
  enum class Phase : uint8_t { kConnecting, kOpen, kDraining, kClosed };

  Connection(tcp::socket socket, uint64_t id, bool inbound, const tcp::endpoint& remote, const ParseOptions& parse)
      : socket_(std::move(socket)),
        id_(id),
        inbound_(inbound),
        remote_ip_(remote.address().to_string()),
        remote_port_(remote.port()),
        remote_key_(fmt::format("{}|{}", remote_ip_, remote_port_)),
        framer_(parse) {}

 private:
  friend class SipTransport::Impl;

  tcp::socket socket_;
  const uint64_t id_;
  const bool inbound_;
  const std::string remote_ip_;
  const uint16_t remote_port_;
  const std::string remote_key_;
  StreamFramer framer_;
  Phase phase_ = Phase::kOpen;
  std::string buffer_;  // received, not yet consumed
  std::array<char, kTcpReadChunk> read_buffer_{};
  std::deque<Wire> write_queue_;
  size_t write_backlog_ = 0;  // bytes in write_queue_
  bool writing_ = false;
  SteadyClock::time_point last_activity_ = SteadyClock::now();
  std::optional<SteadyClock::time_point> message_started_;
  SteadyClock::time_point drain_deadline_{};
};

// ---- Impl: construction, listening, stopping ----

SipTransport::Impl::Impl(asio::io_context& io, MetricsRegistry& metrics, TransportLimits limits)
    : io_(io),
      metrics_(metrics),
      limits_(std::move(limits)),
      sweep_interval_(std::clamp(std::min({limits_.tcp_idle_timeout / 4, limits_.tcp_message_timeout / 4,
                                           kMaxSweepInterval}),
                                 kMinSweepInterval, kMaxSweepInterval)),
      udp_(io),
      acceptor_(io),
      sweep_timer_(io),
      udp_retry_timer_(io),
      accept_retry_timer_(io),
      random_(std::random_device{}()) {
  for (size_t t = 0; t < 2; ++t) {
    for (size_t d = 0; d < 2; ++d) {
      messages_[t][d] = metrics_.GetCounter(
          "tandem_sip_messages_total", "SIP messages received (in) and sent (out), retransmissions included",
          fmt::format("transport=\"{}\",direction=\"{}\"", MetricTransportName(t), d == 0 ? "in" : "out"));
    }
    for (size_t k = 0; k < kParseErrorKinds; ++k) {
      malformed_[t][k] = metrics_.GetCounter(
          "tandem_sip_malformed_total", "SIP messages rejected by the parser or the stream framer",
          fmt::format("transport=\"{}\",reason=\"{}\"", MetricTransportName(t),
                      ParseErrorKindName(static_cast<ParseErrorKind>(k))));
    }
  }
  retransmissions_absorbed_ = metrics_.GetCounter(
      "tandem_sip_retransmissions_absorbed_total", "retransmitted requests absorbed by a server transaction");
  connections_refused_ = metrics_.GetCounter(
      "tandem_sip_tcp_connections_refused_total", "TCP connections closed at once: over the per-source or total limit");
  overload_rejected_ = metrics_.GetCounter(
      "tandem_sip_overload_rejected_total", "requests answered 503 because the transaction table is full");
  open_connections_gauge_ = metrics_.GetGauge("tandem_sip_tcp_connections_open", "open SIP TCP connections");
  transactions_gauge_ = metrics_.GetGauge("tandem_sip_server_transactions", "live SIP server transactions");
}

std::string SipTransport::Impl::NewTag() {
  // 16 hex digits, by hand: one per request, and fmt's parsing shows in profiles.
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t bits = random_();
  std::string tag(16, '0');
  for (int i = 15; i >= 0; --i, bits >>= 4) tag[i] = kHex[bits & 15];
  return tag;
}

Result<uint16_t> SipTransport::Impl::Listen(const std::string& address, uint16_t port) {
  if (listening_ || stopped_) {
    return MakeError(ErrorCode::kFailedPrecondition, "the SIP transport is already listening or was stopped");
  }
  std::optional<asio::ip::address> ip = ParseIpLiteral(address);
  if (!ip) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("'{}' is not an IPv4 or IPv6 address to listen on", address));
  }
  const int attempts = port == 0 ? kListenAttempts : 1;
  ErrorCodeAsio ec;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    udp::endpoint udp_endpoint(*ip, port);
    udp_.open(udp_endpoint.protocol(), ec);
    if (!ec && ip->is_v6()) udp_.set_option(asio::ip::v6_only(true), ec);
    if (!ec) udp_.bind(udp_endpoint, ec);
    if (!ec) {
      // Bursts (thousands of devices re-registering after an outage) must queue in
      // the kernel rather than be dropped; the kernel caps this at net.core.rmem_max.
      ErrorCodeAsio ignored;
      udp_.set_option(asio::socket_base::receive_buffer_size(kUdpReceiveBufferBytes), ignored);
    }
    if (ec) {
      udp_.close();
      return MakeError(ErrorCode::kIoError, fmt::format("cannot bind UDP {}: {}", FormatHostPort(*ip, port),
                                                        ec.message()));
    }
    const uint16_t bound = udp_.local_endpoint(ec).port();
    tcp::endpoint tcp_endpoint(*ip, bound);
    acceptor_.open(tcp_endpoint.protocol(), ec);
    if (!ec && ip->is_v6()) acceptor_.set_option(asio::ip::v6_only(true), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(tcp_endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      ErrorCodeAsio ignored;
      acceptor_.close(ignored);
      udp_.close(ignored);
      if (port == 0 && ec == asio::error::address_in_use) continue;  // UDP's port is taken on TCP: retry
      return MakeError(ErrorCode::kIoError, fmt::format("cannot listen on TCP {}: {}", FormatHostPort(*ip, bound),
                                                        ec.message()));
    }
    listening_ = true;
    {
      std::lock_guard lock(sent_by_mu_);
      sent_by_ = FormatHostPort(*ip, bound);
    }
    StartUdpReceive();
    StartAccept();
    ScheduleSweep();
    return bound;
  }
  return MakeError(ErrorCode::kIoError,
                   fmt::format("no port on {} was free for both UDP and TCP after {} attempts: {}", address,
                               attempts, ec.message()));
}

void SipTransport::Impl::RequestStop() {
  if (OnSipThread() || io_.stopped()) {
    Shutdown();
    return;
  }
  asio::post(io_, [self = shared_from_this()] { self->Shutdown(); });
}

void SipTransport::Impl::Shutdown() {
  if (stopped_.exchange(true)) return;
  ErrorCodeAsio ignored;
  udp_.close(ignored);
  acceptor_.close(ignored);
  sweep_timer_.cancel();
  udp_retry_timer_.cancel();
  accept_retry_timer_.cancel();
  std::vector<ConnectionPtr> connections;
  connections.reserve(connections_.size());
  for (const auto& [id, c] : connections_) connections.push_back(c);
  for (const ConnectionPtr& c : connections) CloseConnection(c, "stopped");
  for (const auto& [key, tx] : transactions_) {
    tx->in_table_ = false;
    tx->CancelTimer();
  }
  transactions_.clear();
  deadlines_ = {};
  completed_.clear();
  completed_order_.clear();
  UpdateGauges();
}

// ---- receiving ----

void SipTransport::Impl::StartUdpReceive() {
  udp_.async_receive_from(asio::buffer(udp_buffer_), udp_sender_,
                          [self = shared_from_this()](const ErrorCodeAsio& ec, size_t size) {
                            self->OnUdpDatagram(ec, size);
                          });
}

void SipTransport::Impl::OnUdpDatagram(const ErrorCodeAsio& ec, size_t size) {
  if (stopped_ || ec == asio::error::operation_aborted) return;
  if (ec) {
    // ICMP errors and the like: keep serving, without spinning on a persistent error.
    spdlog::debug("SIP UDP: receive failed: {}", ec.message());
    udp_retry_timer_.expires_after(kSocketRetryDelay);
    udp_retry_timer_.async_wait([self = shared_from_this()](const ErrorCodeAsio& wait_ec) {
      if (!wait_ec && !self->stopped_) self->StartUdpReceive();
    });
    return;
  }
  std::string_view bytes(udp_buffer_.data(), size);
  if (!IsBlank(bytes)) {
    MessageSource source{.protocol = TransportProtocol::kUdp,
                         .address = udp_sender_.address().to_string(),
                         .port = udp_sender_.port()};
    OnMessage(bytes, source, Framing::kDatagram);
  }
  if (!stopped_) StartUdpReceive();
}

void SipTransport::Impl::OnMessage(std::string_view bytes, const MessageSource& source, Framing framing) {
  messages_[TransportIndex(source.protocol)][0]->Increment();
  ParseOptions options = limits_.parse;
  options.framing = framing;
  ParseResult<SipMessage> parsed = ParseMessage(std::string(bytes), options);
  if (!parsed) {
    OnMalformed(bytes, source, parsed.error());
    return;
  }
  if (parsed->is_response()) {
    if (response_handler_) {
      response_handler_(std::move(*parsed), source);
    } else {
      spdlog::debug("SIP {}: response {} from {}:{} dropped: no response handler", TransportName(source.protocol),
                    parsed->status_code(), source.address, source.port);
    }
    return;
  }
  OnRequest(std::move(*parsed), source);
}

void SipTransport::Impl::OnMalformed(std::string_view bytes, const MessageSource& source, const ParseError& error) {
  size_t kind = static_cast<size_t>(error.kind);
  if (kind < kParseErrorKinds) malformed_[TransportIndex(source.protocol)][kind]->Increment();
  spdlog::debug("SIP {}: malformed message from {}:{} ({}): {}", TransportName(source.protocol), source.address,
                source.port, ParseErrorKindName(error.kind), error.reason);
  if (!error.ShouldRespond() || StartsWithAck(bytes)) return;
  std::optional<std::string> response = BuildErrorResponse(bytes, error, NewTag());
  if (response) SendWire(source, MakeWire(std::move(*response)));
}

void SipTransport::Impl::OnRequest(SipMessage request, const MessageSource& source) {
  StampTopVia(&request, source.address, source.port);
  switch (request.method_id()) {
    case Method::kAck:
      OnAck(request);
      return;
    case Method::kCancel:
      OnCancel(std::move(request), source);
      return;
    default:
      break;
  }
  std::optional<std::string> key = ServerTransactionKey(request, request.method());
  if (!key) {
    spdlog::debug("SIP {}: request from {}:{} without a usable Via/CSeq dropped", TransportName(source.protocol),
                  source.address, source.port);
    return;
  }
  if (TransactionPtr tx = FindTransaction(*key)) {
    OnRetransmission(tx, source);
    return;
  }
  if (ReplayCompleted(*key, source)) return;
  if (int code = CheckRequestUriScheme(request); code != 0) {
    RespondStateless(request, source, code);
    return;
  }
  if (TransactionCount() >= limits_.max_transactions) {
    overload_rejected_->Increment();
    RespondStateless(request, source, 503, "Retry-After", "5");
    return;
  }
  TransactionPtr tx = CreateTransaction(std::move(request), source, std::move(*key), NewTag());
  if (!request_handler_) {
    SendTransactionResponse(tx, BuildResponse(tx->request(), 500, "No Request Handler", tx->to_tag()));
    return;
  }
  request_handler_(tx);
}

void SipTransport::Impl::OnAck(const SipMessage& ack) {
  std::optional<std::string> key = ServerTransactionKey(ack, "INVITE");
  TransactionPtr tx = key ? FindTransaction(*key) : nullptr;
  if (!tx || !tx->is_invite_) {
    // An ACK for a 2xx belongs to the dialog layer, which tandem does not have yet.
    spdlog::debug("SIP: ACK matching no INVITE server transaction dropped (Call-ID {})", ack.CallId());
    return;
  }
  Result<ViaHeader> via = ack.TopVia();
  if (via && !IsRfc3261Branch(via->branch) && ack.ToTag() != tx->response_to_tag_) {
    spdlog::debug("SIP: RFC 2543 ACK with a foreign To tag dropped (Call-ID {})", ack.CallId());
    return;
  }
  switch (tx->state_) {
    case Transaction::State::kCompleted:
      // Timer I: absorb ACK retransmissions for T4 on UDP; end at once on TCP.
      tx->state_ = Transaction::State::kConfirmed;
      tx->CancelTimer();
      if (tx->reliable_) {
        EndTransaction(tx);
      } else {
        SetDeadline(tx, SteadyClock::now() + limits_.t4);
      }
      return;
    case Transaction::State::kConfirmed:
      return;  // a retransmitted ACK
    default:
      spdlog::debug("SIP: ACK for an INVITE without a non-2xx final response dropped (Call-ID {})", ack.CallId());
      return;
  }
}

void SipTransport::Impl::OnCancel(SipMessage cancel, const MessageSource& source) {
  std::optional<std::string> cancel_key = ServerTransactionKey(cancel, "CANCEL");
  std::optional<std::string> invite_key = ServerTransactionKey(cancel, "INVITE");
  if (!cancel_key || !invite_key) return;
  if (TransactionPtr tx = FindTransaction(*cancel_key)) {
    OnRetransmission(tx, source);
    return;
  }
  if (ReplayCompleted(*cancel_key, source)) return;
  if (TransactionCount() >= limits_.max_transactions) {
    overload_rejected_->Increment();
    RespondStateless(cancel, source, 503, "Retry-After", "5");
    return;
  }
  TransactionPtr invite = FindTransaction(*invite_key);
  if (invite && !invite->is_invite_) invite = nullptr;
  // RFC 3261 §9.2: the 200 to CANCEL carries the To tag of the INVITE's responses.
  std::string tag = invite ? invite->to_tag_ : NewTag();
  TransactionPtr tx = CreateTransaction(std::move(cancel), source, std::move(*cancel_key), std::move(tag));
  if (!invite) {
    SendTransactionResponse(tx, BuildResponse(tx->request(), 481, {}, tx->to_tag()));
    return;
  }
  SendTransactionResponse(tx, BuildResponse(tx->request(), 200, {}, tx->to_tag()));
  if (!invite->final_sent()) {
    invite->cancelled_.store(true, std::memory_order_release);
    SendTransactionResponse(invite, BuildResponse(invite->request(), 487, {}, invite->to_tag()));
  }
}

void SipTransport::Impl::OnRetransmission(const TransactionPtr& tx, const MessageSource& source) {
  retransmissions_absorbed_->Increment();
  if (tx->state_ == Transaction::State::kConfirmed) return;
  if (tx->last_response_) {
    SendWire(source, tx->last_response_);
    return;
  }
  // An INVITE retransmitted before the handler answered: tell the client we have it.
  if (tx->is_invite_) SendTransactionResponse(tx, BuildResponse(tx->request(), 100));
}

void SipTransport::Impl::RespondStateless(const SipMessage& request, const MessageSource& source, int status_code,
                                          std::string_view extra_name, std::string_view extra_value) {
  SipMessage response = BuildResponse(request, status_code, {}, NewTag());
  if (!extra_name.empty()) response.AddHeader(extra_name, extra_value);
  SendWire(source, MakeWire(response.Serialize()));
}

// ---- transactions ----

SipTransport::Impl::TransactionPtr SipTransport::Impl::CreateTransaction(SipMessage request,
                                                                         const MessageSource& source,
                                                                         std::string key, std::string to_tag) {
  // Not make_shared: the deadline queue's weak_ptr would pin the whole object (request
  // included) until the deadline passes, long after a completed transaction is gone.
  TransactionPtr tx(new Transaction(weak_from_this(), std::move(request), source, std::move(key), std::move(to_tag)));
  tx->in_table_ = true;
  transactions_.emplace(std::string_view(tx->key_), tx);
  const auto now = SteadyClock::now();
  if (tx->is_invite_) {
    SetDeadline(tx, now + kAbandonedInviteAge);
    ArmTryingTimer(tx);
  } else {
    // A client gives up after Timer F = 64*T1; a handler that never answers must not
    // pin the transaction forever.
    SetDeadline(tx, now + 64 * limits_.t1);
  }
  UpdateGauges();
  return tx;
}

SipTransport::Impl::TransactionPtr SipTransport::Impl::FindTransaction(const std::string& key) const {
  auto it = transactions_.find(key);
  return it == transactions_.end() ? nullptr : it->second;
}

bool SipTransport::Impl::ReplayCompleted(const std::string& key, const MessageSource& source) {
  auto it = completed_.find(key);
  if (it == completed_.end()) return false;
  retransmissions_absorbed_->Increment();
  SendWire(source, it->second);
  return true;
}

void SipTransport::Impl::KeepCompleted(const TransactionPtr& tx, SteadyClock::time_point timer_j) {
  EndTransaction(tx);
  // A right-sized copy: the key was built with room to spare.
  completed_order_.push_back(CompletedKey{timer_j, std::string(tx->key_.data(), tx->key_.size())});
  completed_.emplace(std::string_view(completed_order_.back().key), tx->last_response_);
  UpdateGauges();
}

void SipTransport::Impl::SetDeadline(const TransactionPtr& tx, SteadyClock::time_point when) {
  tx->deadline_ = when;
  deadlines_.push(Deadline{when, tx});
}

void SipTransport::Impl::EndTransaction(const TransactionPtr& tx) {
  tx->CancelTimer();
  if (!tx->in_table_) return;
  tx->in_table_ = false;
  auto it = transactions_.find(tx->key_);
  if (it != transactions_.end() && it->second == tx) transactions_.erase(it);
  UpdateGauges();
}

void SipTransport::Impl::ArmTryingTimer(const TransactionPtr& tx) {
  if (!tx->timer_) tx->timer_.emplace(io_);
  tx->timer_->expires_after(kTryingDelay);
  tx->timer_->async_wait([weak = weak_from_this(), tx](const ErrorCodeAsio& ec) {
    std::shared_ptr<Impl> impl = weak.lock();
    if (ec || !impl || impl->stopped_ || !tx->in_table_ || tx->last_response_) return;
    impl->SendTransactionResponse(tx, BuildResponse(tx->request(), 100));
  });
}

void SipTransport::Impl::ArmTimerG(const TransactionPtr& tx) {
  if (!tx->timer_) tx->timer_.emplace(io_);
  tx->timer_->expires_after(tx->timer_g_interval_);
  tx->timer_->async_wait([weak = weak_from_this(), tx](const ErrorCodeAsio& ec) {
    std::shared_ptr<Impl> impl = weak.lock();
    if (ec || !impl || impl->stopped_ || !tx->in_table_ || tx->state_ != Transaction::State::kCompleted) return;
    impl->SendWire(tx->source_, tx->last_response_);
    tx->timer_g_interval_ = std::min(2 * tx->timer_g_interval_, impl->limits_.t2);
    impl->ArmTimerG(tx);
  });
}

void SipTransport::Impl::SendTransactionResponse(const TransactionPtr& tx, SipMessage response) {
  if (stopped_) return;
  const int code = response.status_code();
  if (!response.is_response() || code < 100 || code > 699) {
    spdlog::warn("SIP: a handler tried to answer {} with an invalid status {}: ignored", tx->request().method(), code);
    return;
  }
  if (tx->final_sent()) {
    spdlog::debug("SIP: {} response to {} after the final response ignored (Call-ID {})", code,
                  tx->request().method(), tx->request().CallId());
    return;
  }
  EnsureToTag(&response, tx->to_tag_);
  tx->last_response_ = MakeWire(response.Serialize());
  SendWire(tx->source_, tx->last_response_);
  if (code < 200) {
    if (tx->state_ == Transaction::State::kTrying) tx->state_ = Transaction::State::kProceeding;
    return;
  }
  tx->CancelTimer();
  tx->response_to_tag_ = std::string(response.ToTag());
  const auto now = SteadyClock::now();
  if (!tx->is_invite_) {
    // Timer J: replay the final response to retransmissions for 64*T1 on UDP.
    tx->state_ = Transaction::State::kCompleted;
    if (!tx->in_table_) return;
    if (tx->reliable_) {
      EndTransaction(tx);
    } else {
      KeepCompleted(tx, now + 64 * limits_.t1);
    }
    return;
  }
  if (code < 300) {
    // RFC 6026 Timer L: absorb INVITE retransmissions; the 2xx's own retransmission
    // and its ACK belong to the dialog layer.
    tx->state_ = Transaction::State::kAccepted;
    if (tx->in_table_) SetDeadline(tx, now + 64 * limits_.t1);
    return;
  }
  // Non-2xx: wait for the ACK for Timer H; on UDP retransmit with Timer G.
  tx->state_ = Transaction::State::kCompleted;
  if (!tx->in_table_) return;
  SetDeadline(tx, now + 64 * limits_.t1);
  if (!tx->reliable_) {
    tx->timer_g_interval_ = std::min(limits_.t1, limits_.t2);
    ArmTimerG(tx);
  }
}

// ---- sending ----

bool SipTransport::Impl::SendWire(const MessageSource& to, const Wire& wire) {
  if (stopped_) return false;
  if (to.protocol == TransportProtocol::kUdp) {
    std::optional<asio::ip::address> ip = ParseIpLiteral(to.address);
    if (!ip || !udp_.is_open()) return false;
    messages_[0][1]->Increment();
    udp_.async_send_to(asio::buffer(*wire), udp::endpoint(*ip, to.port),
                       [wire, address = *ip, port = to.port](const ErrorCodeAsio& ec, size_t) {
                         if (ec) spdlog::debug("SIP UDP: send to {} failed: {}", FormatHostPort(address, port),
                                               ec.message());
                       });
    return true;
  }
  auto it = connections_.find(to.connection_id);
  if (it == connections_.end() || !QueueWrite(it->second, wire)) {
    spdlog::debug("SIP TCP: connection {} to {}:{} is gone; message dropped", to.connection_id, to.address, to.port);
    return false;
  }
  messages_[1][1]->Increment();
  return true;
}

Status SipTransport::Impl::Send(const MessageSource& to, const SipMessage& message) {
  if (to.protocol == TransportProtocol::kUdp && (!ParseIpLiteral(to.address) || to.port == 0)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("'{}' port {} is not an IP address and port to send to", to.address, to.port));
  }
  if (stopped_) return MakeError(ErrorCode::kFailedPrecondition, "the SIP transport is stopped");
  Wire wire = MakeWire(message.Serialize());
  if (OnSipThread()) {
    if (!SendWire(to, wire)) {
      return MakeError(ErrorCode::kUnavailable,
                       fmt::format("cannot send to {} {}:{}: the connection is closed", TransportName(to.protocol),
                                   to.address, to.port));
    }
    return OkStatus();
  }
  asio::post(io_, [weak = weak_from_this(), to, wire] {
    if (std::shared_ptr<Impl> impl = weak.lock()) impl->SendWire(to, wire);
  });
  return OkStatus();
}

Status SipTransport::Impl::SendRequest(TransportProtocol protocol, const std::string& address, uint16_t port,
                                       const SipMessage& request) {
  if (!request.is_request()) return MakeError(ErrorCode::kInvalidArgument, "SendRequest needs a request");
  std::optional<asio::ip::address> ip = ParseIpLiteral(address);
  if (!ip || port == 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("'{}' port {} is not an IP address and port to send to", address, port));
  }
  if (stopped_) return MakeError(ErrorCode::kFailedPrecondition, "the SIP transport is stopped");
  Wire wire = MakeWire(request.Serialize());
  if (OnSipThread()) return SendRequestOnSipThread(protocol, *ip, port, wire);
  asio::post(io_, [weak = weak_from_this(), protocol, ip = *ip, port, wire] {
    if (std::shared_ptr<Impl> impl = weak.lock()) {
      Status status = impl->SendRequestOnSipThread(protocol, ip, port, wire);
      if (!status) spdlog::debug("SIP: request not sent: {}", status.error().message);
    }
  });
  return OkStatus();
}

Status SipTransport::Impl::SendRequestOnSipThread(TransportProtocol protocol, const asio::ip::address& address,
                                                  uint16_t port, const Wire& wire) {
  if (stopped_) return MakeError(ErrorCode::kFailedPrecondition, "the SIP transport is stopped");
  if (protocol == TransportProtocol::kUdp) {
    if (!SendWire(MessageSource{.protocol = protocol, .address = address.to_string(), .port = port}, wire)) {
      return MakeError(ErrorCode::kUnavailable, "the UDP socket is not open");
    }
    return OkStatus();
  }
  std::string remote_key = fmt::format("{}|{}", address.to_string(), port);
  if (auto it = connection_by_remote_.find(remote_key); it != connection_by_remote_.end()) {
    auto c = connections_.find(it->second);
    if (c != connections_.end() && QueueWrite(c->second, wire)) {
      messages_[1][1]->Increment();
      return OkStatus();
    }
  }
  if (connections_.size() >= limits_.max_connections) {
    return MakeError(ErrorCode::kUnavailable,
                     fmt::format("cannot connect to {}: {} TCP connections are open", FormatHostPort(address, port),
                                 connections_.size()));
  }
  tcp::endpoint remote(address, port);
  ConnectionPtr c = AddConnection(tcp::socket(io_), /*inbound=*/false, remote);
  c->phase_ = Connection::Phase::kConnecting;
  QueueWrite(c, wire);
  messages_[1][1]->Increment();
  c->socket_.async_connect(remote, [weak = weak_from_this(), c](const ErrorCodeAsio& ec) {
    std::shared_ptr<Impl> impl = weak.lock();
    if (!impl || c->phase_ != Connection::Phase::kConnecting) return;
    if (ec) {
      spdlog::debug("SIP TCP: connecting to {}:{} failed: {}", c->remote_ip_, c->remote_port_, ec.message());
      impl->CloseConnection(c, "connect_failed");
      return;
    }
    ErrorCodeAsio ignored;
    c->socket_.set_option(tcp::no_delay(true), ignored);
    c->phase_ = Connection::Phase::kOpen;
    c->last_activity_ = SteadyClock::now();
    impl->StartRead(c);
    if (!c->write_queue_.empty()) impl->StartWrite(c);
  });
  return OkStatus();
}

// ---- TCP ----

void SipTransport::Impl::StartAccept() {
  acceptor_.async_accept([self = shared_from_this()](const ErrorCodeAsio& ec, tcp::socket socket) {
    self->OnAccept(ec, std::move(socket));
  });
}

void SipTransport::Impl::OnAccept(const ErrorCodeAsio& ec, tcp::socket socket) {
  if (stopped_ || ec == asio::error::operation_aborted) return;
  if (ec) {
    // EMFILE and friends: retry shortly instead of spinning.
    spdlog::warn("SIP TCP: accept failed: {}", ec.message());
    accept_retry_timer_.expires_after(kSocketRetryDelay);
    accept_retry_timer_.async_wait([self = shared_from_this()](const ErrorCodeAsio& wait_ec) {
      if (!wait_ec && !self->stopped_) self->StartAccept();
    });
    return;
  }
  ErrorCodeAsio remote_ec;
  tcp::endpoint remote = socket.remote_endpoint(remote_ec);
  if (remote_ec) {
    ErrorCodeAsio ignored;
    socket.close(ignored);
    StartAccept();
    return;
  }
  std::string ip = remote.address().to_string();
  auto per_source = inbound_per_source_.find(ip);
  size_t from_source = per_source == inbound_per_source_.end() ? 0 : per_source->second;
  if (connections_.size() >= limits_.max_connections || from_source >= limits_.max_connections_per_source) {
    connections_refused_->Increment();
    spdlog::debug("SIP TCP: connection from {} refused ({} from this source, {} in all)",
                  FormatHostPort(remote.address(), remote.port()), from_source, connections_.size());
    ErrorCodeAsio ignored;
    socket.close(ignored);
    StartAccept();
    return;
  }
  ErrorCodeAsio ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  ConnectionPtr c = AddConnection(std::move(socket), /*inbound=*/true, remote);
  StartRead(c);
  StartAccept();
}

SipTransport::Impl::ConnectionPtr SipTransport::Impl::AddConnection(tcp::socket socket, bool inbound,
                                                                    const tcp::endpoint& remote) {
  auto c = std::make_shared<Connection>(std::move(socket), next_connection_id_++, inbound, remote, limits_.parse);
  connections_.emplace(c->id_, c);
  connection_by_remote_[c->remote_key_] = c->id_;
  if (inbound) ++inbound_per_source_[c->remote_ip_];
  UpdateGauges();
  return c;
}

void SipTransport::Impl::StartRead(const ConnectionPtr& c) {
  c->socket_.async_read_some(asio::buffer(c->read_buffer_),
                             [weak = weak_from_this(), c](const ErrorCodeAsio& ec, size_t size) {
                               if (std::shared_ptr<Impl> impl = weak.lock()) impl->OnRead(c, ec, size);
                             });
}

void SipTransport::Impl::OnRead(const ConnectionPtr& c, const ErrorCodeAsio& ec, size_t size) {
  if (stopped_ || c->phase_ == Connection::Phase::kClosed) return;
  if (ec) {
    CloseConnection(c, ec == asio::error::eof ? "peer_closed" : "read_error");
    return;
  }
  c->last_activity_ = SteadyClock::now();
  if (c->phase_ == Connection::Phase::kOpen) {
    c->buffer_.append(c->read_buffer_.data(), size);
    ProcessStream(c);
  }
  // Draining connections read and discard until the peer closes.
  if (c->phase_ == Connection::Phase::kOpen || c->phase_ == Connection::Phase::kDraining) StartRead(c);
}

void SipTransport::Impl::ProcessStream(const ConnectionPtr& c) {
  while (c->phase_ == Connection::Phase::kOpen && !stopped_) {
    ParseResult<Frame> frame = c->framer_.Next(c->buffer_);
    if (!frame) {
      OnFramingError(c, frame.error());
      return;
    }
    switch (frame->kind) {
      case FrameKind::kNeedMore:
        if (c->buffer_.empty()) {
          c->message_started_.reset();
        } else if (!c->message_started_) {
          c->message_started_ = SteadyClock::now();
        }
        return;
      case FrameKind::kKeepAlivePing:
        c->buffer_.erase(0, frame->length);
        QueueWrite(c, KeepAlivePong());
        break;
      case FrameKind::kKeepAlivePong:
        c->buffer_.erase(0, frame->length);
        break;
      case FrameKind::kMessage: {
        MessageSource source{.protocol = TransportProtocol::kTcp,
                             .address = c->remote_ip_,
                             .port = c->remote_port_,
                             .connection_id = c->id_};
        OnMessage(std::string_view(c->buffer_).substr(0, frame->length), source, Framing::kStream);
        c->buffer_.erase(0, frame->length);
        c->message_started_.reset();
        break;
      }
    }
  }
}

void SipTransport::Impl::OnFramingError(const ConnectionPtr& c, const ParseError& error) {
  MessageSource source{.protocol = TransportProtocol::kTcp,
                       .address = c->remote_ip_,
                       .port = c->remote_port_,
                       .connection_id = c->id_};
  // Counts, and answers (513 for an oversize request, 400 for a missing or bad
  // Content-Length) when the framer could tell it is a request.
  OnMalformed(c->buffer_, source, error);
  // The stream cannot be resynchronized.
  BeginDrain(c, "framing_error");
}

bool SipTransport::Impl::QueueWrite(const ConnectionPtr& c, const Wire& wire) {
  if (c->phase_ == Connection::Phase::kClosed || c->phase_ == Connection::Phase::kDraining) return false;
  if (c->write_backlog_ + wire->size() > kMaxWriteBacklog) {
    spdlog::debug("SIP TCP: {}:{} does not read what it is sent; closing", c->remote_ip_, c->remote_port_);
    CloseConnection(c, "write_backlog");
    return false;
  }
  c->write_backlog_ += wire->size();
  c->write_queue_.push_back(wire);
  if (!c->writing_ && c->phase_ == Connection::Phase::kOpen) StartWrite(c);
  return true;
}

void SipTransport::Impl::StartWrite(const ConnectionPtr& c) {
  c->writing_ = true;
  // The handler keeps the bytes alive even if the queue is cleared meanwhile.
  const Wire& wire = c->write_queue_.front();
  asio::async_write(c->socket_, asio::buffer(*wire),
                    [weak = weak_from_this(), c, wire](const ErrorCodeAsio& ec, size_t) {
                      if (std::shared_ptr<Impl> impl = weak.lock()) impl->OnWrite(c, ec);
                    });
}

void SipTransport::Impl::OnWrite(const ConnectionPtr& c, const ErrorCodeAsio& ec) {
  c->writing_ = false;
  if (stopped_ || c->phase_ == Connection::Phase::kClosed) return;
  if (ec) {
    CloseConnection(c, "write_error");
    return;
  }
  c->write_backlog_ -= c->write_queue_.front()->size();
  c->write_queue_.pop_front();
  c->last_activity_ = SteadyClock::now();
  if (!c->write_queue_.empty()) {
    StartWrite(c);
  } else if (c->phase_ == Connection::Phase::kDraining) {
    ErrorCodeAsio ignored;
    c->socket_.shutdown(tcp::socket::shutdown_send, ignored);
  }
}

void SipTransport::Impl::BeginDrain(const ConnectionPtr& c, std::string_view reason) {
  if (c->phase_ != Connection::Phase::kOpen) {
    CloseConnection(c, reason);
    return;
  }
  CountClosed(reason);
  // Send what is queued (the error response), then FIN, and read until the peer
  // closes: closing with unread input would reset the connection and could destroy
  // the response before the peer reads it.
  c->phase_ = Connection::Phase::kDraining;
  c->drain_deadline_ = SteadyClock::now() + kDrainTimeout;
  c->buffer_.clear();
  c->buffer_.shrink_to_fit();
  c->message_started_.reset();
  if (!c->writing_ && c->write_queue_.empty()) {
    ErrorCodeAsio ignored;
    c->socket_.shutdown(tcp::socket::shutdown_send, ignored);
  }
}

void SipTransport::Impl::CloseConnection(const ConnectionPtr& c, std::string_view reason) {
  if (c->phase_ == Connection::Phase::kClosed) return;
  if (c->phase_ != Connection::Phase::kDraining) CountClosed(reason);
  spdlog::debug("SIP TCP: connection {} with {}:{} closed: {}", c->id_, c->remote_ip_, c->remote_port_, reason);
  c->phase_ = Connection::Phase::kClosed;
  ErrorCodeAsio ignored;
  c->socket_.shutdown(tcp::socket::shutdown_both, ignored);
  c->socket_.close(ignored);
  c->write_queue_.clear();
  c->write_backlog_ = 0;
  c->buffer_.clear();
  auto it = connections_.find(c->id_);
  if (it != connections_.end() && it->second == c) connections_.erase(it);
  auto remote = connection_by_remote_.find(c->remote_key_);
  if (remote != connection_by_remote_.end() && remote->second == c->id_) connection_by_remote_.erase(remote);
  if (c->inbound_) {
    auto per_source = inbound_per_source_.find(c->remote_ip_);
    if (per_source != inbound_per_source_.end() && --per_source->second == 0) inbound_per_source_.erase(per_source);
  }
  UpdateGauges();
}

void SipTransport::Impl::CountClosed(std::string_view reason) {
  metrics_
      .GetCounter("tandem_sip_tcp_connections_closed_total", "SIP TCP connections closed, by reason",
                  fmt::format("reason=\"{}\"", reason))
      ->Increment();
}

// ---- housekeeping ----

void SipTransport::Impl::ScheduleSweep() {
  sweep_timer_.expires_after(sweep_interval_);
  sweep_timer_.async_wait([weak = weak_from_this()](const ErrorCodeAsio& ec) {
    std::shared_ptr<Impl> impl = weak.lock();
    if (ec || !impl || impl->stopped_) return;
    impl->Sweep();
    impl->ScheduleSweep();
  });
}

void SipTransport::Impl::Sweep() {
  const auto now = SteadyClock::now();
  while (!deadlines_.empty() && deadlines_.top().when <= now) {
    Deadline deadline = deadlines_.top();
    deadlines_.pop();
    TransactionPtr tx = deadline.tx.lock();
    // Stale entries (the deadline moved) are skipped.
    if (tx && tx->in_table_ && tx->deadline_ == deadline.when) EndTransaction(tx);
  }
  if (!completed_order_.empty() && completed_order_.front().timer_j <= now) {
    while (!completed_order_.empty() && completed_order_.front().timer_j <= now) {
      completed_.erase(std::string_view(completed_order_.front().key));
      completed_order_.pop_front();
    }
    UpdateGauges();
  }
  std::vector<std::pair<ConnectionPtr, std::string_view>> to_close;
  for (const auto& [id, c] : connections_) {
    if (c->phase_ == Connection::Phase::kDraining) {
      if (now >= c->drain_deadline_) to_close.emplace_back(c, "drained");
    } else if (c->message_started_ && now - *c->message_started_ > limits_.tcp_message_timeout) {
      to_close.emplace_back(c, "slow_message");
    } else if (now - c->last_activity_ > limits_.tcp_idle_timeout) {
      to_close.emplace_back(c, c->phase_ == Connection::Phase::kConnecting ? "connect_timeout" : "idle");
    }
  }
  for (const auto& [c, reason] : to_close) CloseConnection(c, reason);
}

void SipTransport::Impl::UpdateGauges() {
  open_connections_.store(connections_.size(), std::memory_order_relaxed);
  active_transactions_.store(TransactionCount(), std::memory_order_relaxed);
  open_connections_gauge_->Set(static_cast<double>(connections_.size()));
  transactions_gauge_->Set(static_cast<double>(TransactionCount()));
}

// ---- SipTransport ----

SipTransport::SipTransport(asio::io_context& io, MetricsRegistry& metrics, TransportLimits limits)
    : impl_(std::make_shared<Impl>(io, metrics, std::move(limits))) {}

SipTransport::~SipTransport() { impl_->Shutdown(); }

void SipTransport::SetRequestHandler(RequestHandler handler) { impl_->SetRequestHandler(std::move(handler)); }

void SipTransport::SetResponseHandler(ResponseHandler handler) { impl_->SetResponseHandler(std::move(handler)); }

Result<uint16_t> SipTransport::Listen(const std::string& address, uint16_t port) { return impl_->Listen(address, port); }

void SipTransport::Stop() { impl_->RequestStop(); }

Status SipTransport::Send(const MessageSource& to, const SipMessage& message) { return impl_->Send(to, message); }

Status SipTransport::SendRequest(TransportProtocol protocol, const std::string& address, uint16_t port,
                                 const SipMessage& request) {
  return impl_->SendRequest(protocol, address, port, request);
}

std::string SipTransport::SentBy() const { return impl_->SentBy(); }

size_t SipTransport::open_tcp_connections() const { return impl_->open_tcp_connections(); }

size_t SipTransport::active_transactions() const { return impl_->active_transactions(); }

}  // namespace tandem::sip
