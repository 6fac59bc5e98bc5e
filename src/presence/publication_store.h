// Event state publications (RFC 3903) for presence: each device of a user
// publishes its own PIDF under an entity tag; the user's presence is their
// composition, the most available state winning.
//
// Thread-safety: thread-safe (one mutex).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "presence/pidf.h"

namespace tandem {

struct PublishRequest {
  std::optional<std::string> if_match;  // SIP-If-Match: refresh, modify or remove that publication
  std::optional<PresenceState> state;   // the body, parsed; nullopt for a body-less refresh
  uint32_t expires_seconds = 0;         // 0 removes
};

struct PublishResult {
  int status = 200;          // 200, 412 (unknown or expired entity tag), 400 (initial without body)
  std::string etag;          // the new entity tag (200 with expires > 0)
  uint32_t expires_seconds = 0;
  bool composition_changed = false;  // watchers must be notified
};

// One publication as the pool's store keeps it for takeover.
struct PublicationRecord {
  std::string etag;
  PresenceState state;
  int64_t expires_at_ms = 0;
  int64_t updated_ms = 0;
};

class PublicationStore {
 public:
  PublishResult Publish(const std::string& aor, const PublishRequest& request, int64_t now_ms);

  // The composed state: open if any publication is open; the note of the most
  // recently updated publication of the winning status. nullopt without any.
  std::optional<PresenceState> Compose(const std::string& aor, int64_t now_ms) const;

  // Drops expired publications; returns the AORs whose composition changed.
  std::vector<std::string> SweepExpired(int64_t now_ms);

  size_t publication_count() const;

  // Pool takeover. The listener hears every change to a user's publications (all
  // of them afterwards; empty when none are left), under the store's lock, so it
  // must not call back into the store. Set it before the store is shared.
  using ChangeListener = std::function<void(const std::string& aor, const std::vector<PublicationRecord>& all)>;
  void SetChangeListener(ChangeListener listener) { listener_ = std::move(listener); }
  // Replaces `aor`'s publications with ones loaded from the store (not heard).
  void Restore(const std::string& aor, const std::vector<PublicationRecord>& all);
  // Forgets the users another server now owns (not heard); returns how many.
  size_t RemoveIf(const std::function<bool(const std::string& aor)>& predicate);

 private:
  struct Publication {
    PresenceState state;
    int64_t expires_at_ms = 0;
    int64_t updated_ms = 0;
  };
  static std::optional<PresenceState> ComposeLocked(const std::map<std::string, Publication>& publications,
                                                    int64_t now_ms);

  void Announce(const std::string& aor, const std::map<std::string, Publication>& publications) const;

  ChangeListener listener_;
  mutable std::mutex mu_;
  std::map<std::string, std::map<std::string, Publication>> by_aor_;  // aor -> etag -> publication
  uint64_t next_etag_ = 1;
};

}  // namespace tandem
