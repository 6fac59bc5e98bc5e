// The recovery-point accounting of `tandem drill`: which acknowledged writes a
// disaster failover lost, and whether each loss is inside the bound the failover
// reported ("everything committed up to T is held; anything after may be lost").
// A write acknowledged at or before T (less a tolerance for clock reads taken a
// few milliseconds apart) must survive: losing one is a broken promise, not RPO.
//
// Thread-safety: pure functions over values.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace tandem {

struct AcknowledgedWrite {
  size_t user = 0;      // the drill's index of the user whose contact list was written
  std::string contact;  // the contact added
  int64_t sent_at_ms = 0;
  int64_t acked_at_ms = 0;
};

struct LossAssessment {
  size_t acknowledged = 0;  // acknowledged writes sent before the loss
  size_t lost = 0;
  size_t lost_within_bound = 0;
  size_t lost_beyond_bound = 0;  // acknowledged before the reported point, yet lost
  int64_t earliest_lost_ms = 0;  // 0 when nothing was lost
  std::vector<AcknowledgedWrite> lost_writes;
};

// `held(user)` is the set of contacts the surviving copy holds for `user`.
// Considers the acknowledged writes sent before `lost_at_ms` (when the lost pool was
// certainly dead): only those can have been acknowledged by it.
LossAssessment AssessLoss(const std::vector<AcknowledgedWrite>& writes, int64_t lost_at_ms,
                          const std::function<const std::set<std::string>&(size_t user)>& held,
                          int64_t held_through_ms, int64_t tolerance_ms);

}  // namespace tandem
