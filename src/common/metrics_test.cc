#include "common/metrics.h"

#include <gtest/gtest.h>

namespace tandem {
namespace {

TEST(MetricsTest, RendersCountersAndGaugesInPrometheusFormat) {
  MetricsRegistry registry;
  registry.GetCounter("tandem_sip_requests_total", "SIP requests received", "transport=\"udp\"")->Increment(3);
  EXPECT_EQ(registry.GetCounter("tandem_sip_requests_total", "SIP requests received", "transport=\"udp\"")->value(), 3u);
  registry.GetGauge("tandem_cms_version", "CMS version of the local replica")->Set(2);
  std::string text = registry.RenderPrometheus();
  EXPECT_NE(text.find("# TYPE tandem_sip_requests_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("tandem_sip_requests_total{transport=\"udp\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("tandem_cms_version 2\n"), std::string::npos);
}

}  // namespace
}  // namespace tandem
