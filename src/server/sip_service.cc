#include "server/sip_service.h"

#include <malloc.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace tandem {

namespace {

constexpr char kAllow[] = "REGISTER, OPTIONS, ACK, CANCEL, PUBLISH, SUBSCRIBE, NOTIFY, MESSAGE";
constexpr auto kSweepInterval = std::chrono::seconds(1);
constexpr size_t kTrimAfterTransactions = 1000;

UserLookup UsersOf(Store& store) {
  return [&store](const std::string& user, const std::string& domain) { return store.FindUser(user, domain); };
}

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

}  // namespace

SipService::SipService(const Topology& topology, const ServerSpec& self, Store& store, MetricsRegistry& metrics,
                       const std::string& shared_secret, WatcherAuthorizer authorize_watcher)
    : address_(self.address),
      port_(self.sip_port),
      metrics_(metrics),
      transport_(io_, metrics),
      uac_(io_, transport_),
      authenticator_(AuthenticatorOptions(topology, shared_secret)),
      registrar_(RegistrarOptions{.domain = topology.sip_domain, .authenticate = topology.sip_authenticate},
                 bindings_, authenticator_, UsersOf(store), metrics),
      presence_(PresenceOptions{.domain = topology.sip_domain}, io_, transport_, uac_, UsersOf(store),
                std::move(authorize_watcher), NotesOf(store), metrics),
      messages_(MessageOptions{.domain = topology.sip_domain}, uac_, bindings_, UsersOf(store), MeetingsOf(store),
                metrics),
      sweep_timer_(io_),
      registered_users_(metrics.GetGauge("tandem_registrar_users", "users with at least one registered contact")),
      registered_contacts_(metrics.GetGauge("tandem_registrar_contacts", "registered contacts")) {
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
}

void SipService::ScheduleSweep() {
  sweep_timer_.expires_after(kSweepInterval);
  sweep_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    bindings_.SweepExpired(NowUnixMillis());
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
