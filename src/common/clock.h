// A wall clock behind a tiny interface, so code that expires things (nonces,
// throttles, leases) can be tested with fake time and no sleeps.
//
// Thread-safety: every Clock here is safe to call from any thread. Ownership:
// users borrow a `const Clock&` that must outlive them.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace tandem {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time (system_clock), so timestamps can be compared across the
  // servers of a pool.
  virtual std::chrono::system_clock::time_point Now() const = 0;
};

// The real clock.
class SystemClock final : public Clock {
 public:
  std::chrono::system_clock::time_point Now() const override {
    return std::chrono::system_clock::now();
  }
  // A process-wide instance, for callers that do not inject one.
  static const SystemClock& Instance() {
    static const SystemClock clock;
    return clock;
  }
};

// A clock that only moves when told to. For tests.
class FakeClock final : public Clock {
 public:
  // Starts at an arbitrary fixed, realistic instant (2024-01-01T00:00:00Z).
  FakeClock()
      : FakeClock(std::chrono::system_clock::time_point(std::chrono::seconds(1704067200))) {}
  explicit FakeClock(std::chrono::system_clock::time_point start)
      : now_(start.time_since_epoch().count()) {}

  std::chrono::system_clock::time_point Now() const override {
    return std::chrono::system_clock::time_point(
        std::chrono::system_clock::duration(now_.load(std::memory_order_acquire)));
  }
  void Advance(std::chrono::system_clock::duration by) {
    now_.fetch_add(by.count(), std::memory_order_acq_rel);
  }
  void Set(std::chrono::system_clock::time_point to) {
    now_.store(to.time_since_epoch().count(), std::memory_order_release);
  }

 private:
  std::atomic<std::chrono::system_clock::rep> now_;
};

// Unix time in milliseconds, the unit of every timestamp tandem stores.
inline int64_t ToUnixMillis(std::chrono::system_clock::time_point at) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(at.time_since_epoch()).count();
}
inline int64_t NowUnixMillis() { return ToUnixMillis(std::chrono::system_clock::now()); }

}  // namespace tandem
