// Instant messages (RFC 3428): a MESSAGE to a user is forked to every device the
// user registered; the sender gets 200 on the first device's 2xx, 480 when the
// user has no device (or none accepted), 404 for an unknown user, 413 when the
// body is over the limit.
//
// Thread-safety: runs on the SIP thread. Borrows everything given.
#pragma once

#include <memory>
#include <string>

#include "common/clock.h"
#include "common/metrics.h"
#include "registrar/binding_table.h"
#include "store/store.h"
#include "transport/sip_transport.h"
#include "uac/client_transactions.h"

namespace tandem {

struct MessageOptions {
  std::string domain;
  size_t max_body_bytes = 16 * 1024;
};

class MessageService {
 public:
  MessageService(MessageOptions options, sip::ClientTransactions& uac, const BindingTable& bindings,
                 UserLookup users, MetricsRegistry& metrics, const Clock& clock = SystemClock::Instance());

  void HandleMessage(const std::shared_ptr<sip::ServerTransaction>& transaction);

  // Forks `request` to every registered device of `aor`; `done` gets the
  // status for the sender (200, 480...). Also used for meeting chat.
  void DeliverToUser(const sip::SipMessage& request, const std::string& aor, std::function<void(int)> done);

 private:
  const MessageOptions options_;
  sip::ClientTransactions& uac_;
  const BindingTable& bindings_;
  UserLookup users_;
  const Clock& clock_;
  Counter* delivered_;
  Counter* undeliverable_;
};

}  // namespace tandem
