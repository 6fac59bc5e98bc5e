#include "common/metrics.h"

#include <fmt/format.h>

namespace tandem {

Counter* MetricsRegistry::GetCounter(const std::string& name, const std::string& help, const std::string& labels) {
  std::lock_guard lock(mu_);
  Family& family = families_[name];
  family.help = help;
  family.is_counter = true;
  auto& slot = family.counters[labels];
  if (!slot) slot = &counter_storage_.emplace_back();
  return slot;
}

Gauge* MetricsRegistry::GetGauge(const std::string& name, const std::string& help, const std::string& labels) {
  std::lock_guard lock(mu_);
  Family& family = families_[name];
  family.help = help;
  family.is_counter = false;
  auto& slot = family.gauges[labels];
  if (!slot) slot = &gauge_storage_.emplace_back();
  return slot;
}

std::string MetricsRegistry::RenderPrometheus() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, family] : families_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, family.help, name, family.is_counter ? "counter" : "gauge");
    auto sample_name = [&](const std::string& labels) { return labels.empty() ? name : fmt::format("{}{{{}}}", name, labels); };
    for (const auto& [labels, counter] : family.counters) out += fmt::format("{} {}\n", sample_name(labels), counter->value());
    for (const auto& [labels, gauge] : family.gauges) out += fmt::format("{} {}\n", sample_name(labels), gauge->value());
  }
  return out;
}

}  // namespace tandem
