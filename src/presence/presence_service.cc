#include "presence/presence_service.h"

#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "presence/pidf.h"

namespace tandem {

using sip::HeaderId;
using sip::SipMessage;

namespace {

constexpr std::string_view kPidfType = "application/pidf+xml";

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// "presence;id=1" -> "presence"
std::string_view EventPackage(const SipMessage& request) {
  auto event = request.FindHeader("Event");
  if (!event) return {};
  std::string_view value = *event;
  return Trim(value.substr(0, value.find(';')));
}

std::string AorOf(const sip::Uri& uri) {
  std::string host(uri.host);
  std::transform(host.begin(), host.end(), host.begin(), ::tolower);
  return fmt::format("sip:{}@{}", uri.UnescapedUser(), host);
}

// The value of a header up to its parameters, without the tag parameter's effect:
// used to rebuild From/To for NOTIFY.
std::string WithTag(std::string_view header_value, std::string_view tag) {
  return fmt::format("{};tag={}", header_value, tag);
}

void RespondWith(const std::shared_ptr<sip::ServerTransaction>& transaction, int code, std::string_view reason,
                 std::initializer_list<std::pair<std::string_view, std::string>> headers = {}) {
  SipMessage response = sip::BuildResponse(transaction->request(), code, reason);
  for (const auto& [name, value] : headers) response.AddHeader(name, value);
  transaction->Respond(std::move(response));
}

}  // namespace

PresenceService::PresenceService(PresenceOptions options, boost::asio::io_context& io, sip::SipTransport& transport,
                                 sip::ClientTransactions& uac, UserLookup users, WatcherAuthorizer authorize,
                                 PresenceNoteLookup notes, MetricsRegistry& metrics, const Clock& clock)
    : options_(std::move(options)),
      io_(io),
      transport_(transport),
      uac_(uac),
      users_(std::move(users)),
      authorize_(std::move(authorize)),
      notes_(std::move(notes)),
      clock_(clock),
      notifies_sent_(metrics.GetCounter("tandem_presence_notifies_total", "NOTIFYs sent to watchers")),
      notifies_failed_(metrics.GetCounter("tandem_presence_notify_failures_total",
                                          "NOTIFYs that got an error or no answer")) {}

int64_t PresenceService::NowMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_.Now().time_since_epoch()).count();
}

std::optional<std::string> PresenceService::ResolvePresentity(
    const std::shared_ptr<sip::ServerTransaction>& transaction) {
  const SipMessage& request = transaction->request();
  if (EventPackage(request) != "presence") {
    RespondWith(transaction, 489, "Bad Event", {{"Allow-Events", "presence"}});
    return std::nullopt;
  }
  auto to = request.To();
  if (!to || !to->uri.is_sip()) {
    RespondWith(transaction, 400, "Bad To Header");
    return std::nullopt;
  }
  std::string aor = AorOf(to->uri);
  std::string host(to->uri.host);
  std::transform(host.begin(), host.end(), host.begin(), ::tolower);
  auto user = host == options_.domain ? users_(to->uri.UnescapedUser(), host) : Result<std::optional<UserRecord>>();
  if (host != options_.domain || !user || !user->has_value()) {
    RespondWith(transaction, 404, "Not Found");
    return std::nullopt;
  }
  return aor;
}

void PresenceService::HandlePublish(const std::shared_ptr<sip::ServerTransaction>& transaction) {
  const SipMessage& request = transaction->request();
  auto presentity = ResolvePresentity(transaction);
  if (!presentity) return;
  // Only the presentity publishes its own presence.
  auto from = request.From();
  if (!from || AorOf(from->uri) != *presentity) {
    return RespondWith(transaction, 403, "Forbidden", {{"Warning", "399 tandem \"only the user may publish\""}});
  }
  auto expires = request.Expires();
  if (!expires) return RespondWith(transaction, 400, "Bad Expires");
  uint32_t seconds = expires->value_or(options_.default_expires);
  if (seconds > 0 && seconds < options_.min_expires) {
    return RespondWith(transaction, 423, "Interval Too Brief", {{"Min-Expires", std::to_string(options_.min_expires)}});
  }
  PublishRequest publish;
  publish.expires_seconds = std::min(seconds, options_.max_expires);
  if (auto if_match = request.FindHeader("SIP-If-Match")) publish.if_match = std::string(Trim(*if_match));
  if (!request.body().empty()) {
    std::string_view type = Trim(request.ContentType().substr(0, request.ContentType().find(';')));
    if (type != kPidfType) return RespondWith(transaction, 415, "Unsupported Media Type", {{"Accept", std::string(kPidfType)}});
    publish.state = ParsePidf(request.body());
    if (!publish.state) return RespondWith(transaction, 400, "Bad PIDF Document");
  }
  PublishResult result = publications_.Publish(*presentity, publish, NowMs());
  if (result.status != 200) {
    return RespondWith(transaction, result.status,
                       result.status == 412 ? "Conditional Request Failed" : "Bad Request");
  }
  SipMessage response = sip::BuildResponse(request, 200, "OK");
  if (!result.etag.empty()) response.AddHeader("SIP-ETag", result.etag);
  response.AddHeader(HeaderId::kExpires, std::to_string(result.expires_seconds));
  transaction->Respond(std::move(response));
  if (result.composition_changed) NotifyWatchers(*presentity);
}

void PresenceService::HandleSubscribe(const std::shared_ptr<sip::ServerTransaction>& transaction) {
  const SipMessage& request = transaction->request();
  auto presentity = ResolvePresentity(transaction);
  if (!presentity) return;
  auto expires = request.Expires();
  if (!expires) return RespondWith(transaction, 400, "Bad Expires");
  uint32_t seconds = expires->value_or(options_.default_expires);
  if (seconds > 0 && seconds < options_.min_expires) {
    return RespondWith(transaction, 423, "Interval Too Brief", {{"Min-Expires", std::to_string(options_.min_expires)}});
  }
  seconds = std::min(seconds, options_.max_expires);

  Subscription subscription;
  std::string_view to_tag = request.ToTag();
  if (!to_tag.empty()) {
    // In-dialog: a refresh, or Expires: 0 to end the subscription.
    auto existing = subscriptions_.Find(std::string(request.CallId()), std::string(to_tag));
    if (!existing) return RespondWith(transaction, 481, "Subscription Does Not Exist");
    subscription = *existing;
  } else {
    auto from = request.From();
    auto contacts = request.Contacts();
    if (!from || from->Tag().empty()) return RespondWith(transaction, 400, "Bad From Header");
    if (!contacts || contacts->is_star || contacts->contacts.size() != 1) {
      return RespondWith(transaction, 400, "Bad Contact", {{"Warning", "399 tandem \"SUBSCRIBE needs one Contact\""}});
    }
    subscription.call_id = std::string(request.CallId());
    subscription.our_tag = fmt::format("{:x}{:x}", NowMs(), next_tag_++);
    subscription.presentity = *presentity;
    subscription.watcher = AorOf(from->uri);
    subscription.from_header = std::string(*request.FindHeader(HeaderId::kFrom));
    subscription.to_header = WithTag(*request.FindHeader(HeaderId::kTo), subscription.our_tag);
    subscription.watcher_contact = std::string(contacts->contacts[0].uri.text);
    subscription.source = transaction->source();
  }
  subscription.expires_at_ms = NowMs() + int64_t{seconds} * 1000;

  SipMessage response = sip::BuildResponse(request, 200, "OK", subscription.our_tag);
  if (to_tag.empty()) {
    // Proxies of the pool that record-routed stay in the dialog (RFC 3261 §12.1.1).
    for (size_t i = request.FindHeaderIndex(HeaderId::kRecordRoute); i != SipMessage::npos;
         i = request.FindHeaderIndex(HeaderId::kRecordRoute, i + 1)) {
      response.AddHeader(HeaderId::kRecordRoute, request.header(i).value);
    }
  }
  response.AddHeader(HeaderId::kExpires, std::to_string(seconds));
  response.AddHeader(HeaderId::kContact, fmt::format("<sip:{}>", transport_.SentBy()));
  transaction->Respond(std::move(response));

  // Respond() is queued on the SIP thread; queue the NOTIFY behind it so watchers
  // see the 200 first (RFC 6665 allows either order, many clients expect this one).
  bool terminated = seconds == 0;
  if (terminated) {
    // A fetch or an unsubscribe: one final NOTIFY, then the dialog ends (RFC 6665 §4.2.1.4).
    subscriptions_.Remove(subscription.call_id, subscription.our_tag);
  } else {
    subscriptions_.Upsert(subscription);
  }
  boost::asio::post(io_, [this, subscription, terminated] { Notify(subscription, terminated); });
}

void PresenceService::Notify(const Subscription& subscription, bool terminated) {
  bool may_see = authorize_ ? authorize_(subscription.presentity, subscription.watcher) == WatcherAccess::kAllowed
                            : true;
  PresenceState state;  // closed: what an unauthorized watcher sees, same as offline
  if (may_see) {
    if (auto composed = publications_.Compose(subscription.presentity, NowMs())) state = *composed;
    if (state.note.empty() && notes_) state.note = notes_(subscription.presentity);
  }
  uint32_t cseq = terminated ? subscription.next_cseq : subscriptions_.NextCSeq(subscription.call_id, subscription.our_tag);
  if (cseq == 0) return;  // the dialog ended meanwhile
  int64_t remaining = std::max<int64_t>(0, (subscription.expires_at_ms - NowMs()) / 1000);
  std::string subscription_state =
      terminated ? std::string("terminated;reason=timeout") : fmt::format("active;expires={}", remaining);

  SipMessage notify = sip::RequestBuilder("NOTIFY", subscription.watcher_contact)
                          .MaxForwards(70)
                          .Header(HeaderId::kFrom, subscription.to_header)
                          .Header(HeaderId::kTo, subscription.from_header)
                          .CallId(subscription.call_id)
                          .CSeq(cseq)
                          .Contact(fmt::format("sip:{}", transport_.SentBy()))
                          .Header("Event", "presence")
                          .Header("Subscription-State", subscription_state)
                          .Body(kPidfType, BuildPidf(subscription.presentity, state))
                          .Build();
  notifies_sent_->Increment();
  sip::RequestTarget target = sip::DeliveryTarget(subscription.watcher_contact, subscription.source);
  uac_.Send(std::move(notify), target,
            [this, call_id = subscription.call_id, tag = subscription.our_tag](const SipMessage& response) {
              if (response.status_code() < 300) return;
              notifies_failed_->Increment();
              // The watcher is gone or refuses the dialog: end the subscription (RFC 6665 §4.1.3).
              if (response.status_code() == 481 || response.status_code() == 408) subscriptions_.Remove(call_id, tag);
            });
}

void PresenceService::NotifyWatchers(const std::string& presentity) {
  for (const Subscription& subscription : subscriptions_.Watchers(presentity)) Notify(subscription, false);
}

void PresenceService::PresentityChanged(const std::string& presentity) {
  boost::asio::post(io_, [this, presentity] { NotifyWatchers(presentity); });
}

void PresenceService::Sweep() {
  int64_t now = NowMs();
  for (const std::string& presentity : publications_.SweepExpired(now)) NotifyWatchers(presentity);
  for (const Subscription& expired : subscriptions_.TakeExpired(now)) Notify(expired, /*terminated=*/true);
}

nlohmann::json PresenceService::StatusJson() const {
  return {{"publications", publications_.publication_count()}, {"subscriptions", subscriptions_.size()}};
}

}  // namespace tandem
