// Instant messages (RFC 3428): a MESSAGE to a user is forked to every device the
// user registered; the sender gets 200 on the first device's 2xx, 480 when the
// user has no device (or none accepted), 404 for an unknown user, 413 when the
// body is over the limit.
//
// Meeting chat: a MESSAGE to a meeting's address, sip:meeting.<id>@<domain>, goes
// to every registered device of the organizer and the attendees (not back to the
// sender); 200 when at least one accepted, 480 when none, 404 for an unknown or
// cancelled meeting, 403 when the sender is not in the meeting.
//
// Thread-safety: runs on the SIP thread. Borrows everything given.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <vector>
#include <string>

#include "common/clock.h"
#include "common/metrics.h"
#include "registrar/binding_table.h"
#include "store/store.h"
#include "transport/sip_transport.h"
#include "uac/client_transactions.h"

namespace tandem {

// The organizer and attendees of a scheduled meeting, or nullopt if there is none.
using MeetingMembersLookup = std::function<std::optional<std::vector<std::string>>(const std::string& meeting_id)>;

// The address of a meeting's chat: "sip:meeting.<id>@<domain>".
inline constexpr std::string_view kMeetingUserPrefix = "meeting.";

struct MessageOptions {
  std::string domain;
  size_t max_body_bytes = 16 * 1024;
};

class MessageService {
 public:
  MessageService(MessageOptions options, sip::ClientTransactions& uac, const BindingTable& bindings,
                 UserLookup users, MeetingMembersLookup meetings, MetricsRegistry& metrics,
                 const Clock& clock = SystemClock::Instance());

  void HandleMessage(const std::shared_ptr<sip::ServerTransaction>& transaction);

  // Forks `request` to every registered device of `aor`; `done` gets the
  // status for the sender (200, 480...). Also used for meeting chat.
  void DeliverToUser(const sip::SipMessage& request, const std::string& aor, std::function<void(int)> done);

 private:
  void DeliverToMeeting(const std::shared_ptr<sip::ServerTransaction>& transaction, const std::string& meeting_id);

  const MessageOptions options_;
  sip::ClientTransactions& uac_;
  const BindingTable& bindings_;
  UserLookup users_;
  MeetingMembersLookup meetings_;
  const Clock& clock_;
  Counter* delivered_;
  Counter* undeliverable_;
};

}  // namespace tandem
