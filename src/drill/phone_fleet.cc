#include "drill/phone_fleet.h"

#include <algorithm>
#include <array>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <random>
#include <thread>
#include <unordered_map>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

#include "auth/digest.h"
#include "common/clock.h"
#include "sip/header_values.h"
#include "sip/message.h"
#include "sip/parser.h"

namespace tandem {

namespace asio = boost::asio;
using udp = asio::ip::udp;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr std::chrono::milliseconds kFirstRetransmit{100};
constexpr int kMaxRedirects = 3;
constexpr int kMaxAuthTries = 2;

// The Authorization value answering the first challenge of `response` whose
// algorithm we support; nullopt if none.
std::optional<std::string> AnswerChallenge(const sip::SipMessage& response, const std::string& user,
                                           const std::string& password, std::string_view method,
                                           std::string_view uri, std::mt19937_64& random) {
  for (size_t i = 0; i < response.header_count(); ++i) {
    sip::HeaderField field = response.header(i);
    if (field.id != sip::HeaderId::kWwwAuthenticate && field.id != sip::HeaderId::kProxyAuthenticate) continue;
    auto challenge = sip::ParseAuthHeader(field.value);
    if (!challenge) continue;
    auto algorithm = ParseDigestAlgorithm(challenge->Param("algorithm").value_or(""));
    auto realm = challenge->Param("realm");
    auto nonce = challenge->Param("nonce");
    if (!algorithm || !realm || !nonce) continue;
    bool qop_auth = challenge->Param("qop").value_or("").find("auth") != std::string_view::npos;
    std::string cnonce = fmt::format("{:016x}", random());
    auto ha1 = ComputeHa1(user, *realm, password, *algorithm);
    if (!ha1) continue;
    auto digest = ComputeResponse(*ha1, *nonce, qop_auth ? "00000001" : "", qop_auth ? cnonce : "",
                                  qop_auth ? "auth" : "", method, uri, *algorithm);
    if (!digest) continue;
    std::string value = fmt::format(R"(Digest username="{}", realm="{}", nonce="{}", uri="{}", response="{}", algorithm={})",
                                    user, *realm, *nonce, uri, *digest, DigestAlgorithmName(*algorithm));
    if (qop_auth) value += fmt::format(R"(, qop=auth, nc=00000001, cnonce="{}")", cnonce);
    if (auto opaque = challenge->Param("opaque")) value += fmt::format(R"(, opaque="{}")", *opaque);
    return value;
  }
  return std::nullopt;
}

}  // namespace

struct PhoneFleet::Impl {
  struct Phone {
    PhoneSpec spec;
    size_t socket = 0;
    std::string aor;
    std::string contact;
    std::string call_id;
    uint32_t cseq = 0;
    PhoneView view;
    // The registration round under way.
    uint64_t round = 0;  // bumped at each new round: outcomes of older ones are ignored
    bool in_round = false;
    std::deque<size_t> todo;
    std::vector<bool> tried;
    int redirects = 0;
    int auth_tries = 0;
    std::string pending_branch;
    std::vector<SteadyClock::time_point> avoid_until;  // per server
    std::unique_ptr<asio::steady_timer> retry_timer;
  };

  struct ProbeBatch {
    uint64_t id = 0;
    std::vector<ProbeResult> results;
    std::vector<bool> delivered;
    size_t remaining = 0;
    std::promise<std::vector<ProbeResult>> done;
  };

  struct Transaction {
    bool is_probe = false;
    size_t phone = 0;  // REGISTER: the phone; probe: the sender
    uint64_t round = 0;
    std::shared_ptr<ProbeBatch> batch;
    size_t probe = 0;
    size_t server = 0;
    std::string wire;
    SteadyClock::time_point deadline;
    std::chrono::milliseconds interval{kFirstRetransmit};
    std::unique_ptr<asio::steady_timer> timer;
  };

  struct Socket {
    udp::socket socket;
    std::array<char, 65536> buffer{};
    udp::endpoint peer;
    std::string sent_by;
    explicit Socket(asio::io_context& io) : socket(io) {}
  };

  FleetOptions options;
  asio::io_context io;
  std::vector<std::unique_ptr<Socket>> sockets;
  std::vector<udp::endpoint> server_endpoints;
  std::vector<Phone> phones;
  std::unordered_map<std::string, size_t> phone_by_user;
  std::unordered_map<std::string, Transaction> transactions;  // by branch
  std::map<uint64_t, std::weak_ptr<ProbeBatch>> batches;
  // Per server: new requests waiting for the window, requests outstanding, and
  // whether its last request went unanswered.
  std::vector<std::deque<std::function<bool()>>> waiting;
  std::vector<size_t> in_flight;
  std::vector<bool> silent;
  uint64_t next_branch = 1;
  uint64_t next_batch = 1;
  std::mt19937_64 random{std::random_device{}()};
  std::thread thread;

  ~Impl() {
    io.stop();
    if (thread.joinable()) thread.join();
  }

  Status Open() {
    for (int i = 0; i < std::max(1, options.sockets); ++i) {
      auto socket = std::make_unique<Socket>(io);
      boost::system::error_code ec;
      socket->socket.open(udp::v4(), ec);
      if (!ec) socket->socket.bind(udp::endpoint(asio::ip::make_address_v4("127.0.0.1"), 0), ec);
      if (ec) return MakeError(ErrorCode::kIoError, fmt::format("cannot open a UDP socket for the phones: {}", ec.message()));
      // Thousands of phones answer at once: a deep buffer rather than drops and retransmissions.
      socket->socket.set_option(asio::socket_base::receive_buffer_size(8 << 20), ec);
      socket->sent_by = fmt::format("127.0.0.1:{}", socket->socket.local_endpoint().port());
      sockets.push_back(std::move(socket));
    }
    for (const FleetServer& server : options.servers) {
      boost::system::error_code ec;
      auto address = asio::ip::make_address(server.address, ec);
      if (ec) return MakeError(ErrorCode::kInvalidArgument, fmt::format("server {} has no IP address", server.id));
      server_endpoints.emplace_back(address, server.sip_port);
    }
    waiting.resize(server_endpoints.size());
    in_flight.assign(server_endpoints.size(), 0);
    silent.assign(server_endpoints.size(), false);
    for (size_t i = 0; i < phones.size(); ++i) {
      Phone& phone = phones[i];
      phone.socket = i % sockets.size();
      phone.aor = fmt::format("sip:{}@{}", phone.spec.user, options.domain);
      phone.contact = fmt::format("<sip:{}@{}>", phone.spec.user, sockets[phone.socket]->sent_by);
      phone.call_id = fmt::format("drill-reg-{}-{:x}", phone.spec.user, random());
      phone.tried.assign(options.servers.size(), false);
      phone.avoid_until.assign(options.servers.size(), SteadyClock::time_point{});
      phone.retry_timer = std::make_unique<asio::steady_timer>(io);
      phone_by_user[phone.spec.user] = i;
    }
    return OkStatus();
  }

  void Receive(size_t index) {
    Socket& socket = *sockets[index];
    socket.socket.async_receive_from(asio::buffer(socket.buffer), socket.peer,
                                     [this, index](const boost::system::error_code& ec, size_t size) {
                                       if (ec == asio::error::operation_aborted) return;
                                       if (!ec) OnDatagram(index, size);
                                       Receive(index);
                                     });
  }

  void OnDatagram(size_t index, size_t size) {
    Socket& socket = *sockets[index];
    auto parsed = sip::ParseMessage(std::string(socket.buffer.data(), size));
    if (!parsed) return;  // not ours to answer
    if (parsed->is_response()) {
      auto via = parsed->TopVia();
      if (via) OnResponse(std::string(via->branch), *parsed);
      return;
    }
    OnRequest(socket, *parsed);
  }

  void OnRequest(Socket& socket, const sip::SipMessage& request) {
    int code = 200;
    if (request.method_id() == sip::Method::kMessage) {
      auto uri = request.RequestUri();
      auto phone = uri ? phone_by_user.find(std::string(uri->user)) : phone_by_user.end();
      if (phone == phone_by_user.end()) {
        code = 404;
      } else {
        MarkDelivered(request.body());
      }
    } else if (request.method_id() != sip::Method::kOptions && request.method_id() != sip::Method::kNotify) {
      code = 501;
    }
    sip::SipMessage response = sip::BuildResponse(request, code, {}, "drill");
    boost::system::error_code ec;
    socket.socket.send_to(asio::buffer(response.Serialize()), socket.peer, 0, ec);
  }

  // A probe's body is "drill-probe <batch>-<index>".
  void MarkDelivered(std::string_view body) {
    constexpr std::string_view kPrefix = "drill-probe ";
    if (!body.starts_with(kPrefix)) return;
    body.remove_prefix(kPrefix.size());
    size_t dash = body.find('-');
    if (dash == std::string_view::npos) return;
    uint64_t batch_id = std::strtoull(std::string(body.substr(0, dash)).c_str(), nullptr, 10);
    size_t probe = std::strtoull(std::string(body.substr(dash + 1)).c_str(), nullptr, 10);
    auto found = batches.find(batch_id);
    if (found == batches.end()) return;
    auto batch = found->second.lock();
    if (batch && probe < batch->delivered.size()) batch->delivered[probe] = true;
  }

  // ---- transactions ----

  std::string NewBranch() { return fmt::format("z9hG4bKdrill{}x{:x}", next_branch++, random() & 0xffffff); }

  // Queues a new request to `server` until its window has room; `send` builds and
  // sends it then, returning false when it is no longer wanted.
  void Enqueue(size_t server, std::function<bool()> send) {
    waiting[server].push_back(std::move(send));
    Pump(server);
  }

  void Pump(size_t server) {
    auto& queue = waiting[server];
    while (!queue.empty() && (silent[server] || in_flight[server] < options.window_per_server)) {
      auto send = std::move(queue.front());
      queue.pop_front();
      if (send()) ++in_flight[server];
    }
  }

  // Ends a transaction: its window slot is free again.
  Transaction Forget(std::unordered_map<std::string, Transaction>::iterator found) {
    Transaction tx = std::move(found->second);
    transactions.erase(found);
    tx.timer->cancel();
    --in_flight[tx.server];
    return tx;
  }

  void Transmit(const std::string& branch) {
    auto found = transactions.find(branch);
    if (found == transactions.end()) return;
    Transaction& tx = found->second;
    auto now = SteadyClock::now();
    if (now >= tx.deadline) {
      OnTimeout(branch);
      return;
    }
    Socket& socket = *sockets[phones[tx.phone].socket];
    boost::system::error_code ec;
    socket.socket.send_to(asio::buffer(tx.wire), server_endpoints[tx.server], 0, ec);
    auto wait = std::min<SteadyClock::duration>(tx.interval, tx.deadline - now);
    tx.interval = std::min<std::chrono::milliseconds>(tx.interval * 2, std::chrono::milliseconds(1000));
    tx.timer->expires_after(wait);
    tx.timer->async_wait([this, branch](const boost::system::error_code& ec) {
      if (!ec) Transmit(branch);
    });
  }

  void Start(std::string branch, Transaction tx, std::chrono::milliseconds timeout) {
    tx.deadline = SteadyClock::now() + timeout;
    tx.timer = std::make_unique<asio::steady_timer>(io);
    transactions.emplace(branch, std::move(tx));
    Transmit(branch);
  }

  void OnResponse(const std::string& branch, const sip::SipMessage& response) {
    auto found = transactions.find(branch);
    if (found == transactions.end() || response.status_code() < 200) return;
    Transaction tx = Forget(found);
    silent[tx.server] = false;
    if (tx.is_probe) {
      FinishProbe(tx, response.status_code());
    } else {
      OnRegisterAnswer(tx, &response);
    }
    Pump(tx.server);
  }

  void OnTimeout(const std::string& branch) {
    auto found = transactions.find(branch);
    if (found == transactions.end()) return;
    Transaction tx = Forget(found);
    silent[tx.server] = true;
    if (tx.is_probe) {
      FinishProbe(tx, 408);
    } else {
      OnRegisterAnswer(tx, nullptr);
    }
    Pump(tx.server);
  }

  // ---- registration ----

  bool Avoided(const Phone& phone, size_t server) const { return phone.avoid_until[server] > SteadyClock::now(); }

  void StartRound(size_t index) {
    Phone& phone = phones[index];
    ++phone.round;
    phone.retry_timer->cancel();
    if (!phone.pending_branch.empty()) {
      if (auto found = transactions.find(phone.pending_branch); found != transactions.end()) {
        size_t server = Forget(found).server;
        Pump(server);
      }
      phone.pending_branch.clear();
    }
    phone.in_round = true;
    phone.view.registered = false;
    phone.redirects = 0;
    std::fill(phone.tried.begin(), phone.tried.end(), false);
    std::vector<size_t> order;
    if (phone.view.registrar >= 0) order.push_back(static_cast<size_t>(phone.view.registrar));  // a refresh
    order.insert(order.end(), phone.spec.servers.begin(), phone.spec.servers.end());
    std::stable_partition(order.begin(), order.end(), [&](size_t server) { return !Avoided(phone, server); });
    phone.todo.assign(order.begin(), order.end());
    NextServer(index);
  }

  void NextServer(size_t index) {
    Phone& phone = phones[index];
    while (!phone.todo.empty() && phone.tried[phone.todo.front()]) phone.todo.pop_front();
    if (phone.todo.empty()) {
      EndRoundUnregistered(index);
      return;
    }
    size_t server = phone.todo.front();
    phone.todo.pop_front();
    phone.tried[server] = true;
    phone.auth_tries = 0;
    SendRegister(index, server, "");
  }

  void EndRoundUnregistered(size_t index) {
    Phone& phone = phones[index];
    phone.in_round = false;
    phone.view.registrar = -1;
    uint64_t round = phone.round;
    phone.retry_timer->expires_after(options.retry_interval);
    phone.retry_timer->async_wait([this, index, round](const boost::system::error_code& ec) {
      if (!ec && phones[index].round == round) StartRound(index);
    });
  }

  void SendRegister(size_t index, size_t server, std::string authorization) {
    uint64_t round = phones[index].round;
    Enqueue(server, [this, index, server, round, authorization = std::move(authorization)] {
      Phone& phone = phones[index];
      if (phone.round != round) return false;  // a newer round replaced this one while it waited
      std::string branch = NewBranch();
      sip::RequestBuilder builder("REGISTER", "sip:" + options.domain);
      builder.Via("UDP", sockets[phone.socket]->sent_by, branch, /*rport=*/true)
          .From(phone.aor, "r" + std::to_string(phone.round))
          .To(phone.aor)
          .CallId(phone.call_id)
          .CSeq(++phone.cseq)
          .Contact(phone.contact)
          .Header(sip::HeaderId::kExpires, std::to_string(options.expires));
      if (!authorization.empty()) builder.Header(sip::HeaderId::kAuthorization, authorization);
      Transaction tx;
      tx.phone = index;
      tx.round = round;
      tx.server = server;
      tx.wire = builder.Build().Serialize();
      phone.pending_branch = branch;
      Start(branch, std::move(tx), Avoided(phone, server) ? options.retry_probe_timeout : options.attempt_timeout);
      return true;
    });
  }

  // `response` is null on a timeout.
  void OnRegisterAnswer(const Transaction& tx, const sip::SipMessage* response) {
    Phone& phone = phones[tx.phone];
    if (phone.round != tx.round) return;
    phone.pending_branch.clear();
    if (response == nullptr) {
      phone.avoid_until[tx.server] = SteadyClock::now() + options.avoid_for;
      NextServer(tx.phone);
      return;
    }
    phone.avoid_until[tx.server] = {};
    int status = response->status_code();
    if (status / 100 == 2) {
      phone.in_round = false;
      phone.view = PhoneView{true, static_cast<int>(tx.server), NowUnixMillis()};
      return;
    }
    if ((status == 401 || status == 407) && phone.auth_tries < kMaxAuthTries) {
      auto authorization = AnswerChallenge(*response, phone.spec.user, phone.spec.password, "REGISTER",
                                           "sip:" + options.domain, random);
      if (authorization) {
        ++phone.auth_tries;
        phone.tried[tx.server] = true;
        SendRegister(tx.phone, tx.server, *authorization);
        return;
      }
    }
    if (status / 100 == 3 && ++phone.redirects <= kMaxRedirects) {
      // Try the servers the redirect names first, unless every one was tried in this
      // round already (the pool it points to does not answer): then the round ends.
      auto contacts = response->Contacts();
      std::vector<size_t> named;
      if (contacts) {
        for (const sip::NameAddr& contact : contacts->contacts) {
          for (size_t s = 0; s < server_endpoints.size(); ++s) {
            if (contact.uri.port == server_endpoints[s].port() &&
                contact.uri.HostAddress() == options.servers[s].address) {
              named.push_back(s);
            }
          }
        }
      }
      std::stable_partition(named.begin(), named.end(), [&](size_t s) { return !Avoided(phone, s); });
      bool any_new = false;
      for (auto it = named.rbegin(); it != named.rend(); ++it) {
        if (!phone.tried[*it]) {
          phone.todo.push_front(*it);
          any_new = true;
        }
      }
      if (!any_new) {
        EndRoundUnregistered(tx.phone);
        return;
      }
    }
    NextServer(tx.phone);
  }

  // ---- probes ----

  void StartProbes(const std::shared_ptr<ProbeBatch>& batch, const std::vector<MessageProbe>& probes) {
    batches[batch->id] = batch;
    if (probes.empty()) {
      batch->done.set_value({});
      return;
    }
    for (size_t i = 0; i < probes.size(); ++i) {
      MessageProbe probe = probes[i];
      Enqueue(probe.server, [this, batch, probe, i] {
        const Phone& from = phones[probe.from];
        const Phone& to = phones[probe.to];
        std::string branch = NewBranch();
        Transaction tx;
        tx.is_probe = true;
        tx.phone = probe.from;
        tx.batch = batch;
        tx.probe = i;
        tx.server = probe.server;
        tx.wire = sip::RequestBuilder("MESSAGE", to.aor)
                      .Via("UDP", sockets[from.socket]->sent_by, branch, /*rport=*/true)
                      .From(from.aor, fmt::format("m{}", next_branch))
                      .To(to.aor)
                      .CallId(fmt::format("drill-msg-{}-{}-{:x}", batch->id, i, random()))
                      .CSeq(1)
                      .Body("text/plain", fmt::format("drill-probe {}-{}", batch->id, i))
                      .Build()
                      .Serialize();
        Start(branch, std::move(tx), options.probe_timeout);
        return true;
      });
    }
  }

  void FinishProbe(const Transaction& tx, int status) {
    ProbeBatch& batch = *tx.batch;
    batch.results[tx.probe] = ProbeResult{status, batch.delivered[tx.probe], NowUnixMillis()};
    if (--batch.remaining == 0) {
      batches.erase(batch.id);
      batch.done.set_value(std::move(batch.results));
    }
  }

  // Runs `work` on the loop thread and waits for it.
  template <typename T>
  T OnLoop(std::function<T()> work) {
    std::packaged_task<T()> task(std::move(work));
    auto result = task.get_future();
    asio::post(io, [&task] { task(); });
    return result.get();
  }
};

Result<std::unique_ptr<PhoneFleet>> PhoneFleet::Create(FleetOptions options, std::vector<PhoneSpec> phones) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->phones.resize(phones.size());
  for (size_t i = 0; i < phones.size(); ++i) impl->phones[i].spec = std::move(phones[i]);
  if (auto opened = impl->Open(); !opened) return std::unexpected(opened.error());
  return std::unique_ptr<PhoneFleet>(new PhoneFleet(std::move(impl)));
}

PhoneFleet::PhoneFleet(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

PhoneFleet::~PhoneFleet() = default;

size_t PhoneFleet::size() const { return impl_->phones.size(); }

void PhoneFleet::Start() {
  Impl& impl = *impl_;
  asio::post(impl.io, [&impl] {
    for (size_t i = 0; i < impl.sockets.size(); ++i) impl.Receive(i);
    for (size_t i = 0; i < impl.phones.size(); ++i) impl.StartRound(i);
  });
  impl.thread = std::thread([&impl] {
    auto guard = asio::make_work_guard(impl.io);
    impl.io.run();
  });
}

void PhoneFleet::ServersLost(const std::set<size_t>& servers) {
  Impl& impl = *impl_;
  impl.OnLoop<bool>([&impl, &servers] {
    auto until = SteadyClock::now() + impl.options.avoid_for;
    for (size_t i = 0; i < impl.phones.size(); ++i) {
      Impl::Phone& phone = impl.phones[i];
      if (phone.view.registrar < 0 || !servers.contains(static_cast<size_t>(phone.view.registrar))) continue;
      phone.avoid_until[phone.view.registrar] = until;
      phone.view.registrar = -1;
      impl.StartRound(i);
    }
    return true;
  });
}

void PhoneFleet::Reregister(const std::vector<size_t>& phones) {
  Impl& impl = *impl_;
  impl.OnLoop<bool>([&impl, &phones] {
    for (size_t i : phones) impl.StartRound(i);
    return true;
  });
}

std::vector<PhoneView> PhoneFleet::Snapshot() {
  Impl& impl = *impl_;
  return impl.OnLoop<std::vector<PhoneView>>([&impl] {
    std::vector<PhoneView> views;
    views.reserve(impl.phones.size());
    for (const Impl::Phone& phone : impl.phones) views.push_back(phone.view);
    return views;
  });
}

std::vector<ProbeResult> PhoneFleet::SendMessages(const std::vector<MessageProbe>& probes) {
  Impl& impl = *impl_;
  auto batch = std::make_shared<Impl::ProbeBatch>();
  batch->results.resize(probes.size());
  batch->delivered.assign(probes.size(), false);
  batch->remaining = probes.size();
  auto done = batch->done.get_future();
  asio::post(impl.io, [&impl, batch, &probes] {
    batch->id = impl.next_batch++;
    impl.StartProbes(batch, probes);
  });
  return done.get();
}

}  // namespace tandem
