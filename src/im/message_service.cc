#include "im/message_service.h"

#include <fmt/format.h>

namespace tandem {

using sip::HeaderId;
using sip::SipMessage;

MessageService::MessageService(MessageOptions options, sip::ClientTransactions& uac, const BindingTable& bindings,
                               UserLookup users, MeetingMembersLookup meetings, MetricsRegistry& metrics,
                               const Clock& clock)
    : options_(std::move(options)),
      uac_(uac),
      bindings_(bindings),
      users_(std::move(users)),
      meetings_(std::move(meetings)),
      clock_(clock),
      delivered_(metrics.GetCounter("tandem_im_messages_delivered_total", "MESSAGEs accepted by a recipient device")),
      undeliverable_(metrics.GetCounter("tandem_im_messages_undeliverable_total",
                                        "MESSAGEs no device of the recipient accepted")) {}

void MessageService::HandleMessage(const std::shared_ptr<sip::ServerTransaction>& transaction) {
  const SipMessage& request = transaction->request();
  if (request.body().size() > options_.max_body_bytes) {
    transaction->Respond(413, "Request Entity Too Large");
    return;
  }
  // The recipient is the Request-URI when it names our domain, else the To (clients
  // that send to the server's address put the user in To).
  auto request_uri = request.RequestUri();
  auto to = request.To();
  const sip::Uri* target = nullptr;
  if (request_uri && request_uri->is_sip() && request_uri->has_user) {
    std::string host(request_uri->host);
    std::transform(host.begin(), host.end(), host.begin(), ::tolower);
    if (host == options_.domain) target = &*request_uri;
  }
  if (target == nullptr && to && to->uri.is_sip()) target = &to->uri;
  if (target == nullptr) {
    transaction->Respond(404, "Not Found");
    return;
  }
  std::string host(target->host);
  std::transform(host.begin(), host.end(), host.begin(), ::tolower);
  std::string user = target->UnescapedUser();
  if (host == options_.domain && user.starts_with(kMeetingUserPrefix)) {
    return DeliverToMeeting(transaction, user.substr(kMeetingUserPrefix.size()));
  }
  auto found = host == options_.domain ? users_(user, host) : Result<std::optional<UserRecord>>();
  if (host != options_.domain || !found || !found->has_value()) {
    transaction->Respond(404, "Not Found");
    return;
  }
  DeliverToUser(request, fmt::format("sip:{}@{}", user, host),
                [transaction](int status) { transaction->Respond(status, status == 200 ? "OK" : std::string_view()); });
}

void MessageService::DeliverToMeeting(const std::shared_ptr<sip::ServerTransaction>& transaction,
                                      const std::string& meeting_id) {
  auto members = meetings_ ? meetings_(meeting_id) : std::nullopt;
  if (!members) {
    transaction->Respond(404, "Not Found");
    return;
  }
  auto from = transaction->request().From();
  std::string sender;
  if (from && from->uri.is_sip()) {
    std::string host(from->uri.host);
    std::transform(host.begin(), host.end(), host.begin(), ::tolower);
    sender = fmt::format("sip:{}@{}", from->uri.UnescapedUser(), host);
  }
  if (std::find(members->begin(), members->end(), sender) == members->end()) {
    transaction->Respond(403, "Forbidden");
    return;
  }
  // One answer for the sender: 200 once any member's device took it, 480 if none did.
  struct Fanout {
    size_t outstanding = 0;
    bool delivered = false;
  };
  auto fanout = std::make_shared<Fanout>();
  for (const std::string& member : *members) fanout->outstanding += member != sender;
  if (fanout->outstanding == 0) {
    transaction->Respond(480, "Temporarily Unavailable");
    return;
  }
  for (const std::string& member : *members) {
    if (member == sender) continue;
    DeliverToUser(transaction->request(), member, [transaction, fanout](int status) {
      fanout->delivered |= status == 200;
      if (--fanout->outstanding == 0) transaction->Respond(fanout->delivered ? 200 : 480, fanout->delivered ? "OK" : "");
    });
  }
}

void MessageService::DeliverToUser(const SipMessage& request, const std::string& aor, std::function<void(int)> done) {
  int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.Now().time_since_epoch()).count();
  std::vector<Binding> devices = bindings_.Lookup(aor, now_ms);
  if (devices.empty()) {
    undeliverable_->Increment();
    done(480);
    return;
  }
  // Shared by the forks: the first 2xx answers the sender; when every fork has
  // failed, the sender gets 480.
  struct Forks {
    size_t outstanding = 0;
    bool answered = false;
    std::function<void(int)> done;
  };
  auto forks = std::make_shared<Forks>();
  forks->outstanding = devices.size();
  forks->done = std::move(done);
  int max_forwards = request.MaxForwards().value_or(70);
  for (const Binding& device : devices) {
    SipMessage copy = request;
    copy.SetRequestUri(device.contact_uri);
    copy.SetHeader(HeaderId::kMaxForwards, std::to_string(std::max(0, max_forwards - 1)));
    uac_.Send(std::move(copy), sip::DeliveryTarget(device.contact_uri, device.source),
              [this, forks](const SipMessage& response) {
                --forks->outstanding;
                if (forks->answered) return;
                if (response.status_code() / 100 == 2) {
                  forks->answered = true;
                  delivered_->Increment();
                  forks->done(200);
                } else if (forks->outstanding == 0) {
                  forks->answered = true;
                  undeliverable_->Increment();
                  forks->done(480);
                }
              });
  }
}

}  // namespace tandem
