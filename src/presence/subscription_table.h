// Presence subscriptions (RFC 6665 dialogs): who watches whom, where to send
// NOTIFYs, and until when.
//
// Thread-safety: thread-safe (one mutex); readers get copies.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "transport/sip_transport.h"

namespace tandem {

struct Subscription {
  std::string call_id;
  std::string our_tag;        // the To tag this server chose: with call_id, the dialog id
  std::string presentity;     // "sip:alice@example.com"
  std::string watcher;        // "sip:bob@example.com"
  std::string from_header;    // the SUBSCRIBE's From value (with the watcher's tag): NOTIFY's To
  std::string to_header;      // the SUBSCRIBE's To value plus our tag: NOTIFY's From
  std::string watcher_contact;
  sip::MessageSource source;  // where the SUBSCRIBE came from
  uint32_t next_cseq = 1;
  int64_t expires_at_ms = 0;
};

class SubscriptionTable {
 public:
  void Upsert(const Subscription& subscription);
  std::optional<Subscription> Find(const std::string& call_id, const std::string& our_tag) const;
  void Remove(const std::string& call_id, const std::string& our_tag);
  // Live subscriptions to `presentity`.
  std::vector<Subscription> Watchers(const std::string& presentity) const;
  // Removes and returns the expired subscriptions.
  std::vector<Subscription> TakeExpired(int64_t now_ms);
  // The CSeq for the next NOTIFY of a dialog (0 if the dialog is gone).
  uint32_t NextCSeq(const std::string& call_id, const std::string& our_tag);

  size_t size() const;

  // Pool takeover. The listener hears every change (the subscription as it now is,
  // or removed), under the table's lock, so it must not call back into the table.
  // Set it before the table is shared.
  using ChangeListener = std::function<void(const Subscription& subscription, bool removed)>;
  void SetChangeListener(ChangeListener listener) { listener_ = std::move(listener); }
  // Adds a subscription loaded from the store (not heard).
  void Restore(const Subscription& subscription);
  // Forgets the subscriptions to presentities another server now owns (not heard).
  size_t RemoveIf(const std::function<bool(const std::string& presentity)>& predicate);

 private:
  using Key = std::pair<std::string, std::string>;  // call_id, our_tag
  void UpsertLocked(const Subscription& subscription);
  void RemoveLocked(std::map<Key, Subscription>::iterator found);
  ChangeListener listener_;
  mutable std::mutex mu_;
  std::map<Key, Subscription> by_dialog_;               // guarded by mu_
  std::map<std::string, std::set<Key>> by_presentity_;  // guarded by mu_
};

}  // namespace tandem
