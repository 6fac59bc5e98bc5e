// Event state publications (RFC 3903) for presence: each device of a user
// publishes its own PIDF under an entity tag; the user's presence is their
// composition, the most available state winning.
//
// Thread-safety: thread-safe (one mutex).
#pragma once

#include <cstdint>
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

class PublicationStore {
 public:
  PublishResult Publish(const std::string& aor, const PublishRequest& request, int64_t now_ms);

  // The composed state: open if any publication is open; the note of the most
  // recently updated publication of the winning status. nullopt without any.
  std::optional<PresenceState> Compose(const std::string& aor, int64_t now_ms) const;

  // Drops expired publications; returns the AORs whose composition changed.
  std::vector<std::string> SweepExpired(int64_t now_ms);

  size_t publication_count() const;

 private:
  struct Publication {
    PresenceState state;
    int64_t expires_at_ms = 0;
    int64_t updated_ms = 0;
  };
  static std::optional<PresenceState> ComposeLocked(const std::map<std::string, Publication>& publications,
                                                    int64_t now_ms);

  mutable std::mutex mu_;
  std::map<std::string, std::map<std::string, Publication>> by_aor_;  // aor -> etag -> publication
  uint64_t next_etag_ = 1;
};

}  // namespace tandem
