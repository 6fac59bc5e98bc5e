#include "drill/loss_accounting.h"

namespace tandem {

LossAssessment AssessLoss(const std::vector<AcknowledgedWrite>& writes, int64_t lost_at_ms,
                          const std::function<const std::set<std::string>&(size_t user)>& held,
                          int64_t held_through_ms, int64_t tolerance_ms) {
  LossAssessment assessment;
  for (const AcknowledgedWrite& write : writes) {
    if (write.sent_at_ms > lost_at_ms) continue;
    ++assessment.acknowledged;
    if (held(write.user).contains(write.contact)) continue;
    ++assessment.lost;
    assessment.lost_writes.push_back(write);
    if (assessment.earliest_lost_ms == 0 || write.acked_at_ms < assessment.earliest_lost_ms) {
      assessment.earliest_lost_ms = write.acked_at_ms;
    }
    if (write.acked_at_ms < held_through_ms - tolerance_ms) {
      ++assessment.lost_beyond_bound;
    } else {
      ++assessment.lost_within_bound;
    }
  }
  return assessment;
}

}  // namespace tandem
