// Process-wide counters and gauges, rendered in the Prometheus text format on the
// admin API's /metrics. Metrics are created once (at start-up or first use) and
// live as long as the registry; the returned pointers stay valid.
//
// Thread-safety: all methods are thread-safe; Counter/Gauge updates are lock-free.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>

namespace tandem {

class Counter {
 public:
  void Increment(uint64_t by = 1) { value_.fetch_add(by, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class MetricsRegistry {
 public:
  // `labels` is Prometheus label text without braces, e.g. `transport="udp"`; the
  // same name+labels always returns the same metric.
  Counter* GetCounter(const std::string& name, const std::string& help, const std::string& labels = "");
  Gauge* GetGauge(const std::string& name, const std::string& help, const std::string& labels = "");

  std::string RenderPrometheus() const;

 private:
  struct Family {
    std::string help;
    bool is_counter = true;
    std::map<std::string, Counter*> counters;  // by labels
    std::map<std::string, Gauge*> gauges;
  };
  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
  std::deque<Counter> counter_storage_;  // deque: growth never moves existing elements
  std::deque<Gauge> gauge_storage_;
};

}  // namespace tandem
