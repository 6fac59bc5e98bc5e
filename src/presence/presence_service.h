// Presence (RFC 3856 / 3903 / 6665 with PIDF, RFC 3863): PUBLISH from a user's
// devices, SUBSCRIBE from watchers, NOTIFY on every change of the composed state.
// A watcher sees real presence only if the presentity's privacy allows it; others
// get a closed document (indistinguishable from offline).
//
// Thread-safety: the Handle* methods and Sweep run on the SIP thread.
// PresentityChanged may be called from any thread (it posts to the SIP thread).
// Borrows everything it is given; all must outlive it.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/metrics.h"
#include "presence/publication_store.h"
#include "presence/subscription_table.h"
#include "store/store.h"
#include "transport/sip_transport.h"
#include "uac/client_transactions.h"

namespace tandem {

enum class WatcherAccess { kAllowed, kBlocked, kNotAllowed };
// May `watcher` see `presentity`'s presence (its contact list, allow/block lists, policy)?
using WatcherAuthorizer = std::function<WatcherAccess(const std::string& presentity, const std::string& watcher)>;

// The note the user set through the admin API ("" if none): shown when no device
// published one.
using PresenceNoteLookup = std::function<std::string(const std::string& presentity)>;

struct PresenceOptions {
  std::string domain;
  uint32_t default_expires = 3600;
  uint32_t min_expires = 60;
  uint32_t max_expires = 86400;
};

class PresenceService {
 public:
  PresenceService(PresenceOptions options, boost::asio::io_context& io, sip::SipTransport& transport,
                  sip::ClientTransactions& uac, UserLookup users, WatcherAuthorizer authorize,
                  PresenceNoteLookup notes, MetricsRegistry& metrics, const Clock& clock = SystemClock::Instance());

  void HandlePublish(const std::shared_ptr<sip::ServerTransaction>& transaction);
  void HandleSubscribe(const std::shared_ptr<sip::ServerTransaction>& transaction);

  // The presentity's authorization inputs changed (contacts, privacy): re-send
  // every watcher the document it may now see.
  void PresentityChanged(const std::string& presentity);

  // Expires publications and subscriptions; notifies whom it concerns.
  void Sweep();

  nlohmann::json StatusJson() const;

  // The soft state, for pool takeover (write-back and loading); both thread-safe.
  PublicationStore& publications() { return publications_; }
  SubscriptionTable& subscriptions() { return subscriptions_; }

 private:
  // The presentity AOR of a PUBLISH/SUBSCRIBE (its To), or nullopt after answering 4xx.
  std::optional<std::string> ResolvePresentity(const std::shared_ptr<sip::ServerTransaction>& transaction);
  void Notify(const Subscription& subscription, bool terminated);
  void NotifyWatchers(const std::string& presentity);
  int64_t NowMs() const;

  const PresenceOptions options_;
  boost::asio::io_context& io_;
  sip::SipTransport& transport_;
  sip::ClientTransactions& uac_;
  UserLookup users_;
  WatcherAuthorizer authorize_;
  PresenceNoteLookup notes_;
  const Clock& clock_;
  PublicationStore publications_;
  SubscriptionTable subscriptions_;
  Counter* notifies_sent_;
  Counter* notifies_failed_;
  uint64_t next_tag_ = 1;
};

}  // namespace tandem
