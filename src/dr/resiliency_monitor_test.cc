#include "dr/resiliency_monitor.h"

#include <gtest/gtest.h>

namespace tandem {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class ResiliencyStateTest : public ::testing::Test {
 protected:
  // One probe at t0 + `at`.
  bool Probe(milliseconds at, bool reachable) {
    observation.partner_reachable = reachable;
    return state.Observe(observation, t0 + at);
  }

  ResiliencyState state;
  ResiliencyState::Observation observation{
      .partner = "pool1.example.com", .failure_detection = seconds(120), .failback = seconds(240)};
  const ResiliencyState::TimePoint t0{};
};

TEST_F(ResiliencyStateTest, StartsOnlyAfterThePartnerWasUnreachableForTheWholeDetectionInterval) {
  EXPECT_FALSE(Probe(seconds(0), true));
  EXPECT_FALSE(Probe(seconds(1), false));
  EXPECT_FALSE(Probe(seconds(120), false)) << "unreachable for 119 s only";
  EXPECT_FALSE(state.active());
  EXPECT_TRUE(Probe(seconds(121), false));
  EXPECT_TRUE(state.active());
  EXPECT_EQ(*state.active_since(), t0 + seconds(121));
}

TEST_F(ResiliencyStateTest, AnAnswerInTheMiddleOfAnOutageStartsTheDetectionIntervalAgain) {
  Probe(seconds(0), false);
  Probe(seconds(100), false);
  Probe(seconds(101), true);
  EXPECT_FALSE(Probe(seconds(200), false));
  EXPECT_FALSE(Probe(seconds(319), false));
  EXPECT_TRUE(Probe(seconds(320), false));
}

TEST_F(ResiliencyStateTest, EndsOnlyAfterThePartnerWasReachableForTheWholeFailbackInterval) {
  Probe(seconds(0), false);
  ASSERT_TRUE(Probe(seconds(120), false));
  EXPECT_FALSE(Probe(seconds(130), true));
  EXPECT_FALSE(Probe(seconds(369), true)) << "reachable for 239 s only";
  EXPECT_FALSE(Probe(seconds(370), false)) << "flapping: the failback interval starts again";
  EXPECT_FALSE(Probe(seconds(380), true));
  EXPECT_FALSE(Probe(seconds(619), true));
  EXPECT_TRUE(state.active());
  EXPECT_TRUE(Probe(seconds(620), true));
  EXPECT_FALSE(state.active());
  EXPECT_FALSE(state.active_since().has_value());
}

TEST_F(ResiliencyStateTest, AFailoverByAnAdminSupersedesResiliencyMode) {
  Probe(seconds(0), false);
  ASSERT_TRUE(Probe(seconds(120), false));
  observation.partner_failed_over = true;
  EXPECT_TRUE(Probe(seconds(121), false)) << "routing now says who serves pool1's users";
  EXPECT_FALSE(Probe(seconds(500), false)) << "never while the partner is failed over";
  observation.partner_failed_over = false;  // failed back, still unreachable: the outage counts from its start
  EXPECT_TRUE(Probe(seconds(501), false));
}

TEST_F(ResiliencyStateTest, APoolThatIsItselfFailedOverNeverServesItsPartnersUsers) {
  observation.own_users_served_here = false;
  Probe(seconds(0), false);
  EXPECT_FALSE(Probe(seconds(1000), false));
  EXPECT_FALSE(state.active());
}

TEST_F(ResiliencyStateTest, AnUnpairedPoolNeverEntersAndARepairingStartsOver) {
  observation.partner = "";
  Probe(seconds(0), false);
  EXPECT_FALSE(Probe(seconds(1000), false));
  observation.partner = "pool3.example.com";
  EXPECT_FALSE(Probe(seconds(1001), false)) << "the new partner's outage starts now";
  EXPECT_FALSE(Probe(seconds(1120), false));
  EXPECT_TRUE(Probe(seconds(1121), false));
  EXPECT_EQ(state.partner(), "pool3.example.com");
}

}  // namespace
}  // namespace tandem
