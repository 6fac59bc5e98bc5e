#include "transport/sip_transport.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

namespace tandem::sip {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kDeadline = 5s;

// Polls `condition` until it holds or the deadline passes.
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout = kDeadline) {
  auto deadline = Clock::now() + timeout;
  while (!condition()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// ---- a blocking client socket with deadlines (plain POSIX, so it shares nothing
// with the code under test) ----

class ClientSocket {
 public:
  ClientSocket(const std::string& ip, uint16_t port, bool tcp) : tcp_(tcp) {
    addrinfo hints{};
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    hints.ai_socktype = tcp ? SOCK_STREAM : SOCK_DGRAM;
    addrinfo* result = nullptr;
    if (getaddrinfo(ip.c_str(), std::to_string(port).c_str(), &hints, &result) != 0) return;
    fd_ = socket(result->ai_family, result->ai_socktype, 0);
    if (fd_ >= 0 && connect(fd_, result->ai_addr, result->ai_addrlen) != 0) {
      close(fd_);
      fd_ = -1;
    }
    freeaddrinfo(result);
  }
  ~ClientSocket() {
    if (fd_ >= 0) close(fd_);
  }
  ClientSocket(const ClientSocket&) = delete;
  ClientSocket& operator=(const ClientSocket&) = delete;

  bool ok() const { return fd_ >= 0; }

  uint16_t local_port() const {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  }

  bool Send(std::string_view data) {
    size_t sent = 0;
    while (sent < data.size()) {
      ssize_t n = send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
      if (!tcp_) break;
    }
    return true;
  }

  // The next SIP message from the server (a datagram, or a frame of the stream).
  std::optional<SipMessage> Receive(std::chrono::milliseconds timeout = kDeadline) {
    auto deadline = Clock::now() + timeout;
    if (!tcp_) {
      std::optional<std::string> datagram = ReadSome(deadline);
      if (!datagram) return std::nullopt;
      auto message = ParseMessage(*datagram);
      if (!message) ADD_FAILURE() << "unparsable response: " << message.error().reason << "\n" << *datagram;
      return message ? std::optional<SipMessage>(std::move(*message)) : std::nullopt;
    }
    while (true) {
      auto frame = FindMessageFrame(pending_);
      if (!frame) {
        ADD_FAILURE() << "bad stream from server: " << frame.error().reason;
        return std::nullopt;
      }
      if (frame->kind == FrameKind::kMessage) {
        std::string bytes = pending_.substr(0, frame->length);
        pending_.erase(0, frame->length);
        auto message = ParseMessage(bytes, ParseOptions{.framing = Framing::kStream});
        if (!message) ADD_FAILURE() << "unparsable response: " << message.error().reason << "\n" << bytes;
        return message ? std::optional<SipMessage>(std::move(*message)) : std::nullopt;
      }
      if (frame->kind != FrameKind::kNeedMore) {
        pending_.erase(0, frame->length);
        continue;
      }
      std::optional<std::string> more = ReadSome(deadline);
      if (!more || more->empty()) return std::nullopt;
      pending_ += *more;
    }
  }

  // Skips provisional responses.
  std::optional<SipMessage> ReceiveFinal(std::chrono::milliseconds timeout = kDeadline) {
    auto deadline = Clock::now() + timeout;
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left <= 0ms) return std::nullopt;
      std::optional<SipMessage> message = Receive(left);
      if (!message || message->status_code() >= 200) return message;
    }
  }

  // Exactly `size` raw bytes from the stream.
  std::optional<std::string> ReceiveRaw(size_t size, std::chrono::milliseconds timeout = kDeadline) {
    auto deadline = Clock::now() + timeout;
    while (pending_.size() < size) {
      std::optional<std::string> more = ReadSome(deadline);
      if (!more || more->empty()) return std::nullopt;
      pending_ += *more;
    }
    std::string out = pending_.substr(0, size);
    pending_.erase(0, size);
    return out;
  }

  // True when the server closes the connection (EOF or reset) before the deadline;
  // data received meanwhile is kept for Receive().
  bool WaitClosed(std::chrono::milliseconds timeout = kDeadline) {
    auto deadline = Clock::now() + timeout;
    while (true) {
      std::optional<std::string> more = ReadSome(deadline);
      if (!more) return false;     // timeout
      if (more->empty()) return true;  // EOF or error
      pending_ += *more;
    }
  }

 private:
  // nullopt on timeout; "" on EOF/error (streams).
  std::optional<std::string> ReadSome(Clock::time_point deadline) {
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return std::nullopt;
      pollfd pfd{fd_, POLLIN, 0};
      int ready = poll(&pfd, 1, static_cast<int>(left));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return std::nullopt;
      char buffer[70000];
      ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return std::string();
      return std::string(buffer, static_cast<size_t>(n));
    }
  }

  int fd_ = -1;
  bool tcp_;
  std::string pending_;
};

struct RequestSpec {
  std::string method = "OPTIONS";
  std::string uri = "sip:tandem@127.0.0.1";
  std::string transport = "UDP";
  std::string sent_by = "127.0.0.1:5999";
  std::string branch = "z9hG4bK-test-1";
  std::string via_params;  // after the branch, e.g. ";rport"
  std::string call_id = "call-1@test";
  uint32_t cseq = 1;
  std::string cseq_method;  // defaults to `method`
  std::string to_tag;
  std::string extra_headers;
  std::string body;
};

std::string BuildRequest(const RequestSpec& r) {
  std::string to = "<sip:tandem@127.0.0.1>";
  if (!r.to_tag.empty()) to += ";tag=" + r.to_tag;
  return fmt::format(
      "{} {} SIP/2.0\r\n"
      "Via: SIP/2.0/{} {};branch={}{}\r\n"
      "Max-Forwards: 70\r\n"
      "From: <sip:alice@example.com>;tag=from-1\r\n"
      "To: {}\r\n"
      "Call-ID: {}\r\n"
      "CSeq: {} {}\r\n"
      "{}"
      "Content-Length: {}\r\n\r\n{}",
      r.method, r.uri, r.transport, r.sent_by, r.branch, r.via_params, to, r.call_id, r.cseq,
      r.cseq_method.empty() ? r.method : r.cseq_method, r.extra_headers, r.body.size(), r.body);
}

std::string CSeqMethod(const SipMessage& m) {
  auto cseq = m.CSeq();
  return cseq ? std::string(cseq->method) : std::string();
}

bool Ipv6LoopbackAvailable() {
  int fd = socket(AF_INET6, SOCK_DGRAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_loopback;
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

class SipTransportTest : public ::testing::Test {
 protected:
  static TransportLimits TestLimits() {
    TransportLimits limits;
    limits.t1 = 50ms;
    limits.t2 = 200ms;
    limits.t4 = 100ms;
    return limits;
  }

  // Binds on `address` port 0 and runs the io_context on a background thread.
  void Start(TransportLimits limits = TestLimits(), const std::string& address = "127.0.0.1") {
    address_ = address;
    transport_ = std::make_unique<SipTransport>(io_, metrics_, limits);
    transport_->SetRequestHandler([this](const std::shared_ptr<ServerTransaction>& tx) {
      {
        std::lock_guard lock(mu_);
        transactions_.push_back(tx);
      }
      handler_calls_.fetch_add(1);
      if (behavior_) behavior_(tx);
    });
    transport_->SetResponseHandler([this](SipMessage response, const MessageSource&) {
      std::lock_guard lock(mu_);
      responses_.push_back(std::move(response));
    });
    auto port = transport_->Listen(address, 0);
    ASSERT_TRUE(port) << port.error().message;
    port_ = *port;
    thread_ = std::thread([this] {
      auto work = boost::asio::make_work_guard(io_);
      io_.run();
    });
  }

  void TearDown() override {
    if (transport_) transport_->Stop();
    io_.stop();
    if (thread_.joinable()) thread_.join();
    transport_.reset();
  }

  std::unique_ptr<ClientSocket> Udp() {
    auto s = std::make_unique<ClientSocket>(address_, port_, false);
    EXPECT_TRUE(s->ok());
    return s;
  }
  std::unique_ptr<ClientSocket> Tcp() {
    auto s = std::make_unique<ClientSocket>(address_, port_, true);
    EXPECT_TRUE(s->ok());
    return s;
  }

  uint64_t CounterValue(const std::string& name, const std::string& labels = "") {
    return metrics_.GetCounter(name, "", labels)->value();
  }
  uint64_t Malformed(const std::string& transport, const std::string& reason) {
    return CounterValue("tandem_sip_malformed_total",
                        fmt::format("transport=\"{}\",reason=\"{}\"", transport, reason));
  }

  std::shared_ptr<ServerTransaction> Transaction(size_t index) {
    std::lock_guard lock(mu_);
    return index < transactions_.size() ? transactions_[index] : nullptr;
  }

  boost::asio::io_context io_;
  MetricsRegistry metrics_;
  std::unique_ptr<SipTransport> transport_;
  std::thread thread_;
  std::string address_;
  uint16_t port_ = 0;

  // The request handler's behaviour (runs on the SIP thread); default: 200 OK.
  std::function<void(const std::shared_ptr<ServerTransaction>&)> behavior_ =
      [](const std::shared_ptr<ServerTransaction>& tx) { tx->Respond(200, "OK"); };
  std::atomic<int> handler_calls_{0};
  std::mutex mu_;
  std::vector<std::shared_ptr<ServerTransaction>> transactions_;
  std::vector<SipMessage> responses_;
};

// ---- UDP ----

TEST_F(SipTransportTest, UdpOptionsGetsHandlerResponse) {
  Start();
  EXPECT_EQ(transport_->SentBy(), fmt::format("127.0.0.1:{}", port_));
  auto client = Udp();
  ASSERT_TRUE(client->Send(BuildRequest({})));
  auto response = client->Receive();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status_code(), 200);
  EXPECT_EQ(response->CallId(), "call-1@test");
  EXPECT_FALSE(response->ToTag().empty()) << "the transport adds a To tag";
  EXPECT_EQ(handler_calls_.load(), 1);
  auto tx = Transaction(0);
  ASSERT_TRUE(tx);
  EXPECT_EQ(tx->source().protocol, TransportProtocol::kUdp);
  EXPECT_EQ(tx->source().address, "127.0.0.1");
  EXPECT_EQ(tx->source().port, client->local_port());
  EXPECT_EQ(CounterValue("tandem_sip_messages_total", "transport=\"udp\",direction=\"in\""), 1u);
  EXPECT_EQ(CounterValue("tandem_sip_messages_total", "transport=\"udp\",direction=\"out\""), 1u);
}

TEST_F(SipTransportTest, UdpRetransmissionGetsSameResponseWithoutSecondHandlerCall) {
  Start();
  auto client = Udp();
  std::string request = BuildRequest({});
  ASSERT_TRUE(client->Send(request));
  auto first = client->Receive();
  ASSERT_TRUE(first);
  ASSERT_TRUE(client->Send(request));
  auto second = client->Receive();
  ASSERT_TRUE(second);
  EXPECT_EQ(first->Serialize(), second->Serialize());
  EXPECT_EQ(handler_calls_.load(), 1);
  EXPECT_EQ(CounterValue("tandem_sip_retransmissions_absorbed_total"), 1u);
  EXPECT_EQ(transport_->active_transactions(), 1u) << "Timer J keeps it for 64*T1 on UDP";
  EXPECT_TRUE(WaitFor([&] { return transport_->active_transactions() == 0; })) << "Timer J ends it";
}

TEST_F(SipTransportTest, CompletedUdpTransactionReleasesTheRequestButStillAnswersRetransmissions) {
  Start();
  auto client = Udp();
  std::string request = BuildRequest({});
  ASSERT_TRUE(client->Send(request));
  auto first = client->Receive();
  ASSERT_TRUE(first);
  std::weak_ptr<ServerTransaction> released = Transaction(0);
  {
    std::lock_guard lock(mu_);
    transactions_.clear();
  }
  EXPECT_TRUE(WaitFor([&] { return released.expired(); })) << "the transport holds no reference once completed";
  EXPECT_EQ(transport_->active_transactions(), 1u) << "Timer J still runs";
  ASSERT_TRUE(client->Send(request));
  auto second = client->Receive();
  ASSERT_TRUE(second);
  EXPECT_EQ(first->Serialize(), second->Serialize());
  EXPECT_EQ(handler_calls_.load(), 1);
  EXPECT_EQ(CounterValue("tandem_sip_retransmissions_absorbed_total"), 1u);
  EXPECT_TRUE(WaitFor([&] { return transport_->active_transactions() == 0; })) << "Timer J ends it";
}

TEST_F(SipTransportTest, RetransmissionBeforeFinalIsAbsorbedAndProvisionalReplayed) {
  behavior_ = [](const std::shared_ptr<ServerTransaction>& tx) { tx->Respond(183, "Working"); };
  Start();
  auto client = Udp();
  std::string request = BuildRequest({.method = "MESSAGE", .body = "hi"});
  ASSERT_TRUE(client->Send(request));
  auto provisional = client->Receive();
  ASSERT_TRUE(provisional);
  EXPECT_EQ(provisional->status_code(), 183);
  ASSERT_TRUE(client->Send(request));
  auto replayed = client->Receive();
  ASSERT_TRUE(replayed);
  EXPECT_EQ(replayed->status_code(), 183);
  EXPECT_EQ(handler_calls_.load(), 1);
  // The final response, from another thread, then a second final that is ignored.
  auto tx = Transaction(0);
  ASSERT_TRUE(tx);
  std::thread([tx] {
    tx->Respond(202, "Accepted");
    tx->Respond(500);
  }).join();
  auto final_response = client->Receive();
  ASSERT_TRUE(final_response);
  EXPECT_EQ(final_response->status_code(), 202);
  EXPECT_EQ(final_response->ToTag(), provisional->ToTag());
  ASSERT_TRUE(client->Send(request));
  auto again = client->Receive();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status_code(), 202) << "the 500 was ignored";
}

TEST_F(SipTransportTest, UdpMalformedRequestGets400AndNextRequestWorks) {
  Start();
  auto client = Udp();
  // A Max-Forwards that is not a number.
  std::string bad = BuildRequest({.call_id = "bad-1"});
  bad.replace(bad.find("Max-Forwards: 70"), 16, "Max-Forwards: xx");
  ASSERT_TRUE(client->Send(bad));
  auto response = client->Receive();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status_code(), 400);
  EXPECT_EQ(response->CallId(), "bad-1");
  EXPECT_EQ(handler_calls_.load(), 0);
  EXPECT_EQ(Malformed("udp", "malformed header"), 1u);

  ASSERT_TRUE(client->Send(BuildRequest({.branch = "z9hG4bK-good"})));
  auto good = client->Receive();
  ASSERT_TRUE(good);
  EXPECT_EQ(good->status_code(), 200);
  EXPECT_EQ(handler_calls_.load(), 1);
}

TEST_F(SipTransportTest, UdpGarbageAndMalformedResponsesAreDroppedAndCounted) {
  Start();
  auto client = Udp();
  ASSERT_TRUE(client->Send("<html>this is not SIP</html>\r\n\r\n"));
  ASSERT_TRUE(client->Send("SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n"));
  ASSERT_TRUE(client->Send("\r\n\r\n"));  // a keep-alive: ignored, not counted
  // Datagrams are handled in order: the first answer must be the one to this request.
  ASSERT_TRUE(client->Send(BuildRequest({})));
  auto response = client->Receive();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status_code(), 200);
  EXPECT_EQ(Malformed("udp", "garbage"), 1u);
  uint64_t malformed_total = 0;
  for (auto kind : {ParseErrorKind::kMalformedHeader, ParseErrorKind::kMissingHeader,
                    ParseErrorKind::kMalformedStartLine}) {
    malformed_total += Malformed("udp", std::string(ParseErrorKindName(kind)));
  }
  EXPECT_EQ(malformed_total, 1u) << "the malformed response is counted";
  std::lock_guard lock(mu_);
  EXPECT_TRUE(responses_.empty());
}

TEST_F(SipTransportTest, UnsupportedUriSchemeGets416) {
  Start();
  auto client = Udp();
  ASSERT_TRUE(client->Send(BuildRequest({.uri = "mailto:alice@example.com"})));
  auto response = client->Receive();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status_code(), 416);
  EXPECT_EQ(handler_calls_.load(), 0);
}

TEST_F(SipTransportTest, RportRequestGetsReceivedAndRportInResponse) {
  Start();
  auto client = Udp();
  ASSERT_TRUE(client->Send(BuildRequest({.sent_by = "192.0.2.1:5999", .via_params = ";rport"})));
  auto response = client->Receive();
  ASSERT_TRUE(response);
  auto via = response->TopVia();
  ASSERT_TRUE(via);
  EXPECT_EQ(via->host, "192.0.2.1");
  EXPECT_EQ(via->received, "127.0.0.1");
  ASSERT_TRUE(via->rport.has_value());
  EXPECT_EQ(*via->rport, client->local_port());
  EXPECT_EQ(via->branch, "z9hG4bK-test-1");
}

TEST_F(SipTransportTest, ViaHostDifferentFromSourceGetsReceived) {
  Start();
  auto client = Udp();
  ASSERT_TRUE(client->Send(BuildRequest({.sent_by = "client.example.com:5060"})));
  auto response = client->Receive();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->TopVia()->received, "127.0.0.1");
  EXPECT_FALSE(response->TopVia()->has_rport);
}

TEST_F(SipTransportTest, Rfc2543RequestWithoutCookieMatchesRetransmission) {
  Start();
  auto client = Udp();
  std::string request = BuildRequest({.branch = "old-style-1"});
  ASSERT_TRUE(client->Send(request));
  auto first = client->Receive();
  ASSERT_TRUE(first);
  ASSERT_TRUE(client->Send(request));
  auto second = client->Receive();
  ASSERT_TRUE(second);
  EXPECT_EQ(first->Serialize(), second->Serialize());
  EXPECT_EQ(handler_calls_.load(), 1);
}

TEST_F(SipTransportTest, FullTransactionTableAnswers503) {
  behavior_ = nullptr;
  TransportLimits limits = TestLimits();
  limits.max_transactions = 1;
  Start(limits);
  auto client = Udp();
  ASSERT_TRUE(client->Send(BuildRequest({.branch = "z9hG4bK-first"})));
  ASSERT_TRUE(WaitFor([&] { return handler_calls_.load() == 1; }));
  ASSERT_TRUE(client->Send(BuildRequest({.branch = "z9hG4bK-second"})));
  auto response = client->Receive();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status_code(), 503);
  EXPECT_EQ(response->FindHeader("Retry-After").value_or(""), "5");
  EXPECT_EQ(CounterValue("tandem_sip_overload_rejected_total"), 1u);
  EXPECT_EQ(handler_calls_.load(), 1);
}

// ---- INVITE and CANCEL ----

TEST_F(SipTransportTest, CancelOfPendingInviteGives200And487) {
  behavior_ = nullptr;  // INVITEs stay pending
  Start();
  auto client = Udp();
  ASSERT_TRUE(client->Send(BuildRequest({.method = "INVITE", .branch = "z9hG4bK-inv"})));
  ASSERT_TRUE(WaitFor([&] { return handler_calls_.load() == 1; }));
  ASSERT_TRUE(client->Send(BuildRequest({.method = "CANCEL", .branch = "z9hG4bK-inv"})));
  std::optional<SipMessage> cancel_ok, terminated;
  while (!cancel_ok || !terminated) {
    auto response = client->ReceiveFinal();
    ASSERT_TRUE(response) << "missing the 200 to CANCEL or the 487";
    if (CSeqMethod(*response) == "CANCEL") cancel_ok = std::move(response);
    else if (CSeqMethod(*response) == "INVITE") terminated = std::move(response);
  }
  EXPECT_EQ(cancel_ok->status_code(), 200);
  EXPECT_EQ(terminated->status_code(), 487);
  EXPECT_EQ(cancel_ok->ToTag(), terminated->ToTag());
  auto tx = Transaction(0);
  ASSERT_TRUE(tx);
  EXPECT_TRUE(tx->cancelled());
  EXPECT_EQ(handler_calls_.load(), 1) << "CANCEL does not reach the handler";
  // The ACK for the 487 ends the INVITE transaction (Timer I = T4 on UDP).
  ASSERT_TRUE(client->Send(BuildRequest(
      {.method = "ACK", .branch = "z9hG4bK-inv", .to_tag = std::string(terminated->ToTag())})));
  EXPECT_TRUE(WaitFor([&] { return transport_->active_transactions() == 0; }));
  EXPECT_EQ(handler_calls_.load(), 1) << "ACK does not reach the handler";
}

TEST_F(SipTransportTest, CancelWithoutMatchGets481) {
  Start();
  auto client = Udp();
  ASSERT_TRUE(client->Send(BuildRequest({.method = "CANCEL", .branch = "z9hG4bK-nothing"})));
  auto response = client->Receive();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status_code(), 481);
  EXPECT_EQ(CSeqMethod(*response), "CANCEL");
  EXPECT_EQ(handler_calls_.load(), 0);
}

TEST_F(SipTransportTest, InviteNon2xxIsRetransmittedUntilAck) {
  behavior_ = [](const std::shared_ptr<ServerTransaction>& tx) { tx->Respond(486, "Busy Here"); };
  Start();
  auto client = Udp();
  std::string invite = BuildRequest({.method = "INVITE", .branch = "z9hG4bK-busy"});
  ASSERT_TRUE(client->Send(invite));
  // Timer G (T1 = 50 ms in this test) resends the 486 until the ACK comes.
  int busy = 0;
  std::string to_tag;
  while (busy < 3) {
    auto response = client->Receive();
    ASSERT_TRUE(response);
    ASSERT_EQ(response->status_code(), 486);
    to_tag = std::string(response->ToTag());
    ++busy;
  }
  // A retransmitted INVITE gets the 486 again and is not handed to the handler.
  ASSERT_TRUE(client->Send(invite));
  EXPECT_TRUE(WaitFor([&] { return CounterValue("tandem_sip_retransmissions_absorbed_total") == 1; }));
  ASSERT_TRUE(client->Send(BuildRequest({.method = "ACK", .branch = "z9hG4bK-busy", .to_tag = to_tag})));
  EXPECT_TRUE(WaitFor([&] { return transport_->active_transactions() == 0; }));
  EXPECT_EQ(handler_calls_.load(), 1);
}

TEST_F(SipTransportTest, InviteWithoutAnswerGets100Trying) {
  behavior_ = nullptr;
  Start();
  auto client = Udp();
  ASSERT_TRUE(client->Send(BuildRequest({.method = "INVITE", .branch = "z9hG4bK-slow"})));
  auto trying = client->Receive();
  ASSERT_TRUE(trying);
  EXPECT_EQ(trying->status_code(), 100);
  EXPECT_TRUE(trying->ToTag().empty());
  Transaction(0)->Respond(603, "Decline");
  auto declined = client->Receive();
  ASSERT_TRUE(declined);
  EXPECT_EQ(declined->status_code(), 603);
}

TEST_F(SipTransportTest, StrayAckIsDropped) {
  Start();
  auto client = Udp();
  ASSERT_TRUE(client->Send(BuildRequest({.method = "ACK", .branch = "z9hG4bK-stray", .to_tag = "x"})));
  ASSERT_TRUE(client->Send(BuildRequest({})));
  auto response = client->Receive();
  ASSERT_TRUE(response);
  EXPECT_EQ(CSeqMethod(*response), "OPTIONS") << "nothing answered the ACK";
  EXPECT_EQ(handler_calls_.load(), 1);
}

// ---- TCP ----

TEST_F(SipTransportTest, TcpTwoMessagesInOneWriteAndOneSplitOverWrites) {
  Start();
  auto client = Tcp();
  ASSERT_TRUE(client->Send(BuildRequest({.transport = "TCP", .branch = "z9hG4bK-a", .cseq = 1}) +
                           BuildRequest({.transport = "TCP", .branch = "z9hG4bK-b", .cseq = 2})));
  auto first = client->Receive();
  auto second = client->Receive();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->CSeq()->number, 1u);
  EXPECT_EQ(second->CSeq()->number, 2u);

  std::string split = BuildRequest({.transport = "TCP", .branch = "z9hG4bK-c", .cseq = 3, .body = "hello"});
  ASSERT_TRUE(client->Send(split.substr(0, 40)));
  ASSERT_TRUE(WaitFor([&] { return CounterValue("tandem_sip_messages_total",
                                                "transport=\"tcp\",direction=\"in\"") == 2; }));
  ASSERT_TRUE(client->Send(split.substr(40, split.size() - 42)));
  ASSERT_TRUE(client->Send(split.substr(split.size() - 2)));
  auto third = client->Receive();
  ASSERT_TRUE(third);
  EXPECT_EQ(third->CSeq()->number, 3u);
  EXPECT_EQ(handler_calls_.load(), 3);
  auto tx = Transaction(2);
  ASSERT_TRUE(tx);
  EXPECT_EQ(tx->request().body(), "hello");
  EXPECT_EQ(tx->source().protocol, TransportProtocol::kTcp);
  EXPECT_NE(tx->source().connection_id, 0u);
  EXPECT_EQ(transport_->open_tcp_connections(), 1u);
  EXPECT_TRUE(WaitFor([&] { return transport_->active_transactions() == 0; })) << "Timer J is 0 on TCP";
}

TEST_F(SipTransportTest, TcpCrlfPingAnsweredWithCrlf) {
  Start();
  auto client = Tcp();
  ASSERT_TRUE(client->Send("\r\n\r\n"));
  auto pong = client->ReceiveRaw(2);
  ASSERT_TRUE(pong);
  EXPECT_EQ(*pong, "\r\n");
  ASSERT_TRUE(client->Send(BuildRequest({.transport = "TCP"})));
  auto response = client->Receive();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status_code(), 200);
}

TEST_F(SipTransportTest, TcpOversizeMessageGets513AndIsClosed) {
  TransportLimits limits = TestLimits();
  limits.parse.max_message_size = 2000;
  Start(limits);
  auto client = Tcp();
  ASSERT_TRUE(client->Send(BuildRequest({.transport = "TCP", .call_id = "big-1", .body = std::string(5000, 'x')})));
  auto response = client->Receive();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status_code(), 513);
  EXPECT_EQ(response->CallId(), "big-1");
  EXPECT_TRUE(client->WaitClosed());
  EXPECT_EQ(Malformed("tcp", "message too large"), 1u);
  EXPECT_EQ(handler_calls_.load(), 0);
  EXPECT_TRUE(WaitFor([&] { return transport_->open_tcp_connections() == 0; }));
}

TEST_F(SipTransportTest, TcpEndlessHeaderBlockGets513AndIsClosed) {
  TransportLimits limits = TestLimits();
  limits.parse.max_message_size = 2000;
  Start(limits);
  auto client = Tcp();
  std::string request = BuildRequest({.transport = "TCP", .call_id = "big-2"});
  request.resize(request.size() - 4);  // no end of headers
  request += "\r\n";
  for (int i = 0; i < 100; ++i) request += fmt::format("X-Filler-{}: {}\r\n", i, std::string(40, 'y'));
  ASSERT_TRUE(client->Send(request));
  auto response = client->Receive();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status_code(), 513);
  EXPECT_TRUE(client->WaitClosed());
}

TEST_F(SipTransportTest, TcpMissingContentLengthGets400AndIsClosed) {
  Start();
  auto client = Tcp();
  std::string request = BuildRequest({.transport = "TCP"});
  request.erase(request.find("Content-Length: 0\r\n"), 19);
  ASSERT_TRUE(client->Send(request));
  auto response = client->Receive();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status_code(), 400);
  EXPECT_TRUE(client->WaitClosed());
  EXPECT_EQ(Malformed("tcp", "bad Content-Length"), 1u);
}

TEST_F(SipTransportTest, TcpMalformedFramedRequestGets400AndConnectionStaysOpen) {
  Start();
  auto client = Tcp();
  std::string bad = BuildRequest({.transport = "TCP", .branch = "z9hG4bK-bad"});
  bad.replace(bad.find("Max-Forwards: 70"), 16, "Max-Forwards: xx");
  ASSERT_TRUE(client->Send(bad));
  auto response = client->Receive();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status_code(), 400);
  ASSERT_TRUE(client->Send(BuildRequest({.transport = "TCP", .branch = "z9hG4bK-ok"})));
  auto good = client->Receive();
  ASSERT_TRUE(good);
  EXPECT_EQ(good->status_code(), 200);
}

TEST_F(SipTransportTest, TcpConnectionsOverPerSourceLimitAreRefused) {
  TransportLimits limits = TestLimits();
  limits.max_connections_per_source = 2;
  Start(limits);
  auto a = Tcp();
  auto b = Tcp();
  ASSERT_TRUE(WaitFor([&] { return transport_->open_tcp_connections() == 2; }));
  auto c = Tcp();
  EXPECT_TRUE(c->WaitClosed());
  EXPECT_EQ(CounterValue("tandem_sip_tcp_connections_refused_total"), 1u);
  EXPECT_EQ(transport_->open_tcp_connections(), 2u);
  // The accepted ones still work.
  ASSERT_TRUE(b->Send(BuildRequest({.transport = "TCP"})));
  auto response = b->Receive();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status_code(), 200);
  // Closing one makes room again.
  a.reset();
  ASSERT_TRUE(WaitFor([&] { return transport_->open_tcp_connections() == 1; }));
  auto d = Tcp();
  ASSERT_TRUE(d->Send(BuildRequest({.transport = "TCP", .branch = "z9hG4bK-d"})));
  auto again = d->Receive();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status_code(), 200);
}

TEST_F(SipTransportTest, TcpIdleConnectionIsClosed) {
  TransportLimits limits = TestLimits();
  limits.tcp_idle_timeout = 300ms;
  Start(limits);
  auto client = Tcp();
  ASSERT_TRUE(WaitFor([&] { return transport_->open_tcp_connections() == 1; }));
  EXPECT_TRUE(client->WaitClosed());
  EXPECT_TRUE(WaitFor([&] { return transport_->open_tcp_connections() == 0; }));
  EXPECT_EQ(CounterValue("tandem_sip_tcp_connections_closed_total", "reason=\"idle\""), 1u);
}

TEST_F(SipTransportTest, TcpSlowMessageIsClosed) {
  TransportLimits limits = TestLimits();
  limits.tcp_message_timeout = 300ms;
  Start(limits);
  auto client = Tcp();
  ASSERT_TRUE(client->Send("OPTIONS sip:tandem@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1"));
  EXPECT_TRUE(client->WaitClosed());
  EXPECT_EQ(CounterValue("tandem_sip_tcp_connections_closed_total", "reason=\"slow_message\""), 1u);
}

// ---- sending requests ----

TEST_F(SipTransportTest, SendRequestOverUdpAndTcpAndResponsesReachTheHandler) {
  Start();
  std::string sent_by = transport_->SentBy();
  auto make_request = [&](std::string_view transport, std::string_view branch) {
    return RequestBuilder("OPTIONS", "sip:peer@127.0.0.1")
        .Via(transport, sent_by, branch)
        .From("sip:tandem@127.0.0.1", "t1")
        .To("sip:peer@127.0.0.1")
        .CallId(std::string(branch) + "@tandem")
        .CSeq(1)
        .Build();
  };

  // UDP: the peer is a client socket "connected" to the transport's port.
  auto udp_peer = Udp();
  ASSERT_TRUE(transport_->SendRequest(TransportProtocol::kUdp, "127.0.0.1", udp_peer->local_port(),
                                      make_request("UDP", "z9hG4bK-out-udp")));
  auto request = udp_peer->Receive();
  ASSERT_TRUE(request);
  EXPECT_TRUE(request->is_request());
  ASSERT_TRUE(udp_peer->Send(BuildResponse(*request, 200).Serialize()));
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard lock(mu_);
    return responses_.size() == 1;
  }));

  // TCP: reuse the connection the peer opened (same remote address and port).
  auto tcp_peer = Tcp();
  ASSERT_TRUE(WaitFor([&] { return transport_->open_tcp_connections() == 1; }));
  ASSERT_TRUE(transport_->SendRequest(TransportProtocol::kTcp, "127.0.0.1", tcp_peer->local_port(),
                                      make_request("TCP", "z9hG4bK-out-tcp")));
  auto tcp_request = tcp_peer->Receive();
  ASSERT_TRUE(tcp_request);
  EXPECT_EQ(tcp_request->CallId(), "z9hG4bK-out-tcp@tandem");
  EXPECT_EQ(transport_->open_tcp_connections(), 1u);
  ASSERT_TRUE(tcp_peer->Send(BuildResponse(*tcp_request, 200).Serialize()));
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard lock(mu_);
    return responses_.size() == 2;
  }));

  EXPECT_FALSE(transport_->SendRequest(TransportProtocol::kUdp, "not-an-ip", 5060, make_request("UDP", "x")));
}

TEST_F(SipTransportTest, SendRequestOverTcpConnectsToAnotherTransport) {
  Start();
  boost::asio::io_context peer_io;
  MetricsRegistry peer_metrics;
  SipTransport peer(peer_io, peer_metrics, TestLimits());
  std::atomic<int> peer_requests{0};
  peer.SetRequestHandler([&](const std::shared_ptr<ServerTransaction>& tx) {
    peer_requests.fetch_add(1);
    tx->Respond(200, "OK");
  });
  auto peer_port = peer.Listen("127.0.0.1", 0);
  ASSERT_TRUE(peer_port);
  std::thread peer_thread([&] {
    auto work = boost::asio::make_work_guard(peer_io);
    peer_io.run();
  });
  for (int i = 0; i < 2; ++i) {
    SipMessage request = RequestBuilder("OPTIONS", "sip:peer@127.0.0.1")
                             .Via("TCP", transport_->SentBy(), fmt::format("z9hG4bK-connect-{}", i))
                             .From("sip:tandem@127.0.0.1", "t1")
                             .To("sip:peer@127.0.0.1")
                             .CallId(fmt::format("connect-{}", i))
                             .CSeq(1)
                             .Build();
    ASSERT_TRUE(transport_->SendRequest(TransportProtocol::kTcp, "127.0.0.1", *peer_port, request));
  }
  EXPECT_TRUE(WaitFor([&] {
    std::lock_guard lock(mu_);
    return responses_.size() == 2;
  }));
  EXPECT_EQ(peer_requests.load(), 2);
  EXPECT_EQ(transport_->open_tcp_connections(), 1u) << "the second request reused the connection";
  peer.Stop();
  peer_io.stop();
  peer_thread.join();
}

// ---- IPv6 ----

TEST_F(SipTransportTest, Ipv6LoopbackWorks) {
  if (!Ipv6LoopbackAvailable()) GTEST_SKIP() << "::1 is not available on this machine";
  Start(TestLimits(), "::1");
  EXPECT_EQ(transport_->SentBy(), fmt::format("[::1]:{}", port_));
  auto udp = Udp();
  ASSERT_TRUE(udp->Send(BuildRequest({.uri = "sip:tandem@[::1]", .sent_by = "[::1]:5999", .via_params = ";rport"})));
  auto response = udp->Receive();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status_code(), 200);
  EXPECT_EQ(response->TopVia()->received, "::1");
  auto tcp = Tcp();
  ASSERT_TRUE(tcp->Send(BuildRequest({.uri = "sip:tandem@[::1]", .transport = "TCP", .sent_by = "[::1]:5999",
                                      .branch = "z9hG4bK-v6tcp"})));
  auto tcp_response = tcp->Receive();
  ASSERT_TRUE(tcp_response);
  EXPECT_EQ(tcp_response->status_code(), 200);
  EXPECT_EQ(Transaction(1)->source().address, "::1");
}

// ---- lifecycle ----

TEST_F(SipTransportTest, ListenRejectsHostNamesAndRespondAfterStopIsHarmless) {
  behavior_ = nullptr;
  {
    boost::asio::io_context io;
    MetricsRegistry metrics;
    SipTransport transport(io, metrics);
    EXPECT_FALSE(transport.Listen("localhost", 0));
  }
  Start();
  auto client = Udp();
  ASSERT_TRUE(client->Send(BuildRequest({})));
  ASSERT_TRUE(WaitFor([&] { return handler_calls_.load() == 1; }));
  auto tx = Transaction(0);
  transport_->Stop();
  tx->Respond(200, "OK");
  io_.stop();
  thread_.join();
  transport_.reset();
  tx->Respond(200, "OK");  // the transport is gone: ignored
}

}  // namespace
}  // namespace tandem::sip
