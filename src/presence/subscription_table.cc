#include "presence/subscription_table.h"

namespace tandem {

void SubscriptionTable::UpsertLocked(const Subscription& subscription) {
  Key key{subscription.call_id, subscription.our_tag};
  by_dialog_[key] = subscription;
  by_presentity_[subscription.presentity].insert(key);
}

void SubscriptionTable::RemoveLocked(std::map<Key, Subscription>::iterator found) {
  auto watchers = by_presentity_.find(found->second.presentity);
  if (watchers != by_presentity_.end()) {
    watchers->second.erase(found->first);
    if (watchers->second.empty()) by_presentity_.erase(watchers);
  }
  by_dialog_.erase(found);
}

void SubscriptionTable::Upsert(const Subscription& subscription) {
  std::lock_guard lock(mu_);
  UpsertLocked(subscription);
  if (listener_) listener_(subscription, /*removed=*/false);
}

void SubscriptionTable::Restore(const Subscription& subscription) {
  std::lock_guard lock(mu_);
  UpsertLocked(subscription);
}

std::optional<Subscription> SubscriptionTable::Find(const std::string& call_id, const std::string& our_tag) const {
  std::lock_guard lock(mu_);
  auto found = by_dialog_.find({call_id, our_tag});
  if (found == by_dialog_.end()) return std::nullopt;
  return found->second;
}

void SubscriptionTable::Remove(const std::string& call_id, const std::string& our_tag) {
  std::lock_guard lock(mu_);
  auto found = by_dialog_.find({call_id, our_tag});
  if (found == by_dialog_.end()) return;
  if (listener_) listener_(found->second, /*removed=*/true);
  RemoveLocked(found);
}

size_t SubscriptionTable::RemoveIf(const std::function<bool(const std::string& presentity)>& predicate) {
  std::lock_guard lock(mu_);
  size_t removed = 0;
  for (auto it = by_dialog_.begin(); it != by_dialog_.end();) {
    auto next = std::next(it);
    if (predicate(it->second.presentity)) {
      RemoveLocked(it);
      ++removed;
    }
    it = next;
  }
  return removed;
}

std::vector<Subscription> SubscriptionTable::Watchers(const std::string& presentity) const {
  std::lock_guard lock(mu_);
  std::vector<Subscription> out;
  auto watchers = by_presentity_.find(presentity);
  if (watchers == by_presentity_.end()) return out;
  for (const Key& key : watchers->second) out.push_back(by_dialog_.at(key));
  return out;
}

std::vector<Subscription> SubscriptionTable::TakeExpired(int64_t now_ms) {
  std::vector<Subscription> expired;
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, subscription] : by_dialog_) {
      if (subscription.expires_at_ms <= now_ms) expired.push_back(subscription);
    }
  }
  for (const Subscription& subscription : expired) Remove(subscription.call_id, subscription.our_tag);
  return expired;
}

uint32_t SubscriptionTable::NextCSeq(const std::string& call_id, const std::string& our_tag) {
  std::lock_guard lock(mu_);
  auto found = by_dialog_.find({call_id, our_tag});
  if (found == by_dialog_.end()) return 0;
  uint32_t cseq = found->second.next_cseq++;
  // A new owner must continue above every CSeq already sent in this dialog.
  if (listener_) listener_(found->second, /*removed=*/false);
  return cseq;
}

size_t SubscriptionTable::size() const {
  std::lock_guard lock(mu_);
  return by_dialog_.size();
}

}  // namespace tandem
