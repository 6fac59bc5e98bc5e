#include "presence/publication_store.h"

#include <climits>

#include <fmt/format.h>

namespace tandem {

namespace {

bool SameState(const std::optional<PresenceState>& a, const std::optional<PresenceState>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || (a->basic == b->basic && a->note == b->note);
}

}  // namespace

std::optional<PresenceState> PublicationStore::ComposeLocked(const std::map<std::string, Publication>& publications,
                                                             int64_t now_ms) {
  const Publication* best = nullptr;
  for (const auto& [etag, publication] : publications) {
    if (publication.expires_at_ms <= now_ms) continue;
    bool more_available = best && publication.state.basic == BasicStatus::kOpen && best->state.basic != BasicStatus::kOpen;
    bool same_and_newer = best && publication.state.basic == best->state.basic && publication.updated_ms > best->updated_ms;
    if (!best || more_available || same_and_newer) best = &publication;
  }
  if (!best) return std::nullopt;
  return best->state;
}

PublishResult PublicationStore::Publish(const std::string& aor, const PublishRequest& request, int64_t now_ms) {
  std::lock_guard lock(mu_);
  auto& publications = by_aor_[aor];
  std::optional<PresenceState> before = ComposeLocked(publications, now_ms);
  PublishResult result;

  if (request.if_match) {
    auto existing = publications.find(*request.if_match);
    if (existing == publications.end() || existing->second.expires_at_ms <= now_ms) {
      if (publications.empty()) by_aor_.erase(aor);
      result.status = 412;  // Conditional Request Failed: the client must publish anew
      return result;
    }
    Publication publication = existing->second;
    publications.erase(existing);
    if (request.expires_seconds == 0) {
      // Removal (RFC 3903 §4.5).
      result.expires_seconds = 0;
    } else {
      if (request.state) publication.state = *request.state;  // modify; otherwise a refresh
      publication.expires_at_ms = now_ms + int64_t{request.expires_seconds} * 1000;
      publication.updated_ms = request.state ? now_ms : publication.updated_ms;
      // Every successful refresh or modification gets a fresh entity tag (§4.3).
      result.etag = fmt::format("{:x}{:x}", now_ms, next_etag_++);
      result.expires_seconds = request.expires_seconds;
      publications.emplace(result.etag, publication);
    }
  } else {
    if (!request.state) {
      result.status = 400;  // an initial publication must carry a body
      return result;
    }
    if (request.expires_seconds > 0) {
      result.etag = fmt::format("{:x}{:x}", now_ms, next_etag_++);
      result.expires_seconds = request.expires_seconds;
      publications.emplace(result.etag, Publication{*request.state, now_ms + int64_t{request.expires_seconds} * 1000, now_ms});
    }
  }
  result.composition_changed = !SameState(before, ComposeLocked(publications, now_ms));
  Announce(aor, publications);
  if (publications.empty()) by_aor_.erase(aor);
  return result;
}

void PublicationStore::Announce(const std::string& aor, const std::map<std::string, Publication>& publications) const {
  if (!listener_) return;
  std::vector<PublicationRecord> all;
  all.reserve(publications.size());
  for (const auto& [etag, publication] : publications) {
    all.push_back(PublicationRecord{etag, publication.state, publication.expires_at_ms, publication.updated_ms});
  }
  listener_(aor, all);
}

void PublicationStore::Restore(const std::string& aor, const std::vector<PublicationRecord>& all) {
  std::lock_guard lock(mu_);
  if (all.empty()) {
    by_aor_.erase(aor);
    return;
  }
  auto& publications = by_aor_[aor];
  publications.clear();
  for (const PublicationRecord& record : all) {
    publications[record.etag] = Publication{record.state, record.expires_at_ms, record.updated_ms};
  }
}

size_t PublicationStore::RemoveIf(const std::function<bool(const std::string& aor)>& predicate) {
  std::lock_guard lock(mu_);
  return std::erase_if(by_aor_, [&](const auto& entry) { return predicate(entry.first); });
}

std::optional<PresenceState> PublicationStore::Compose(const std::string& aor, int64_t now_ms) const {
  std::lock_guard lock(mu_);
  auto found = by_aor_.find(aor);
  if (found == by_aor_.end()) return std::nullopt;
  return ComposeLocked(found->second, now_ms);
}

std::vector<std::string> PublicationStore::SweepExpired(int64_t now_ms) {
  std::lock_guard lock(mu_);
  std::vector<std::string> changed;
  for (auto it = by_aor_.begin(); it != by_aor_.end();) {
    // Compose "just before" expiry: everything still counts as live at the epoch start.
    std::optional<PresenceState> before = ComposeLocked(it->second, INT64_MIN);
    size_t removed = std::erase_if(it->second, [&](const auto& entry) { return entry.second.expires_at_ms <= now_ms; });
    if (removed > 0 && !SameState(before, ComposeLocked(it->second, now_ms))) changed.push_back(it->first);
    if (removed > 0) Announce(it->first, it->second);
    it = it->second.empty() ? by_aor_.erase(it) : std::next(it);
  }
  return changed;
}

size_t PublicationStore::publication_count() const {
  std::lock_guard lock(mu_);
  size_t count = 0;
  for (const auto& [aor, publications] : by_aor_) count += publications.size();
  return count;
}

}  // namespace tandem
