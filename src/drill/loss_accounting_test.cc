#include "drill/loss_accounting.h"

#include <map>

#include <gtest/gtest.h>

namespace tandem {
namespace {

TEST(AssessLossTest, CountsOnlyWritesSentBeforeTheLoss) {
  // "late" was sent before the loss and acknowledged after the drill noted it.
  std::vector<AcknowledgedWrite> writes = {
      {0, "a", 90, 100}, {0, "b", 190, 200}, {1, "c", 290, 300}, {1, "late", 450, 520}, {1, "after", 800, 900}};
  std::map<size_t, std::set<std::string>> held = {{0, {"a", "b"}}, {1, {"c", "late"}}};
  auto lookup = [&](size_t user) -> const std::set<std::string>& { return held[user]; };
  LossAssessment assessment = AssessLoss(writes, 500, lookup, 250, 0);
  EXPECT_EQ(assessment.acknowledged, 4u);
  EXPECT_EQ(assessment.lost, 0u);
  EXPECT_EQ(assessment.earliest_lost_ms, 0);
}

TEST(AssessLossTest, SeparatesLossesInsideAndBeyondTheReportedBound) {
  // Held through 250: "c" (300) may be lost; "a" (100) must not be.
  std::vector<AcknowledgedWrite> writes = {{0, "a", 90, 100}, {0, "b", 190, 200}, {1, "c", 290, 300}, {1, "d", 230, 240}};
  std::map<size_t, std::set<std::string>> held = {{0, {"b"}}, {1, {}}};
  auto lookup = [&](size_t user) -> const std::set<std::string>& { return held[user]; };
  LossAssessment assessment = AssessLoss(writes, 500, lookup, 250, 20);
  EXPECT_EQ(assessment.acknowledged, 4u);
  EXPECT_EQ(assessment.lost, 3u);
  EXPECT_EQ(assessment.lost_within_bound, 2u);  // "c", and "d" within the tolerance
  EXPECT_EQ(assessment.lost_beyond_bound, 1u);  // "a"
  EXPECT_EQ(assessment.earliest_lost_ms, 100);
  ASSERT_EQ(assessment.lost_writes.size(), 3u);
}

}  // namespace
}  // namespace tandem
